"""Starting and stopping a group of Ray actors that form one torch.distributed group.

Rank 0's actor tells the others where to meet (its node's IP and a free port there), so the
group works across nodes of a cluster as well as on one machine's loopback.

On loopback (the embedded cluster: the node address is 127.0.0.1) nothing of the group listens
beyond it: torch's TCPStore server binds the wildcard address whatever MASTER_ADDR says, so rank
0 hosts the store itself on a socket bound to 127.0.0.1 (`master_listen_fd`) and every rank joins
it as a client (`TORCHELASTIC_USE_AGENT_STORE`, read by torch's env:// rendezvous); gloo and NCCL
bind the `lo` interface (`GLOO_SOCKET_IFNAME`, `NCCL_SOCKET_IFNAME`).
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
        if rank == 0:
            _STORES.append(host_loopback_store(addr, port))


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


class RankActor:
    """Base of rank actors: cheap constructor; the heavy set-up runs in `setup`."""

    def rendezvous(self) -> tuple[str, int]:
        import ray

        addr = ray.util.get_node_ip_address()
        return addr, free_port(addr)

    def ready(self) -> bool:
        return True


def start_rank_group(
    cls: type, world: int, rank_cpus: float, env: dict, *args, num_gpus: float = 0.0, bundles=None
) -> tuple:
    """Create `world` actors of `cls` and start `setup(rank, world, addr, port, *args)` on each.
    `num_gpus`: each rank's GPU share; rank r in bundle r of the placement group `bundles`
    when given (rlkit.runtime.gpu_placement).

    Returns (actors, setup ObjectRefs); wait on the refs before using the group."""
    import ray

    from rlkit.runtime.gpu_placement import in_bundle

    actor = ray.remote(num_cpus=rank_cpus, num_gpus=num_gpus, runtime_env={"env_vars": env})(cls)
    ranks = [actor.options(**in_bundle(bundles, r)).remote() for r in range(world)]
    addr, port = ray.get(ranks[0].rendezvous.remote())
    setups = [r.setup.remote(i, world, addr, port, *args) for i, r in enumerate(ranks)]
    return ranks, setups


def stop_rank_group(ranks: list) -> None:
    """Barrier + destroy the process group on every rank (a rank aborted otherwise), then kill.
    A group that lost a rank cannot pass a barrier: its survivors are only killed."""
    import ray

    from rlkit.runtime.worker_restarts import is_actor_death

    pings = [r.__ray_ready__.remote() for r in ranks]
    answered, stuck = ray.wait(pings, num_returns=len(pings), timeout=5)
    try:
        if not stuck:  # a survivor of a lost rank may hang in a collective: no answer
            ray.get(answered)  # raises for a dead rank
            ray.get([r.shutdown.remote() for r in ranks], timeout=60)
    except Exception as exc:
        if not is_actor_death(exc):
            raise
    finally:
        for r in ranks:
            ray.kill(r)
