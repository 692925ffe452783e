"""How a rank process joins its torch.distributed group (env:// rendezvous), on one machine's
loopback or across a cluster's nodes.

On loopback (the embedded cluster: the node address is 127.0.0.1) nothing of the group listens
beyond it: torch's TCPStore server binds the wildcard address whatever MASTER_ADDR says, so rank
0 hosts the store itself on a socket bound to 127.0.0.1 (`master_listen_fd`) and every rank joins
it as a client (`TORCHELASTIC_USE_AGENT_STORE`, read by torch's env:// rendezvous); gloo and NCCL
bind the `lo` interface (`GLOO_SOCKET_IFNAME`, `NCCL_SOCKET_IFNAME`).

The trainers (rlkit.engines.deepspeed_engine, .critic_engine) call `set_rank_env` first thing;
the runtime (rlkit.runtime.placement.rank_group) picks the address and port with `free_port`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from typing import Any

_STORES: list[Any] = []  # the loopback TCPStore servers this process hosts (kept alive)


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on `host` (one per group, never shared)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return addr == "localhost"


def set_rank_env(rank: int, world: int, addr: str, port: int) -> None:
    """The env:// rendezvous variables torch.distributed / DeepSpeed read; on a loopback
    address also the loopback-only store and interfaces (module docstring)."""
    os.environ.update(
        MASTER_ADDR=addr,
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK="0",
    )
    if is_loopback(addr):
        os.environ.update(
            GLOO_SOCKET_IFNAME="lo", NCCL_SOCKET_IFNAME="lo", TORCHELASTIC_USE_AGENT_STORE="True"
        )
        if rank == 0 and not _group_ready():  # a rebuilt engine reuses the process group
            _STORES.append(host_loopback_store(addr, port))


def _group_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def host_loopback_store(addr: str, port: int):
    """A TCPStore server listening on `addr:port` only (torch's own binds every interface)."""
    from torch.distributed import TCPStore

    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.listen(128)
    timeout = datetime.timedelta(minutes=30)
    return TCPStore(
        addr, port, None, True, timeout, wait_for_workers=False, master_listen_fd=sock.detach()
    )
