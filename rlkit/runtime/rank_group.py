"""Starting and stopping a group of Ray actors that form one torch.distributed group.

Rank 0's actor tells the others where to meet (its node's IP and a free port there), so the
group works across nodes of a cluster as well as on one machine's loopback.
"""

from __future__ import annotations

import os
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on `host` (one per group, never shared)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def set_rank_env(rank: int, world: int, addr: str, port: int) -> None:
    """The env:// rendezvous variables torch.distributed / DeepSpeed read."""
    os.environ.update(
        MASTER_ADDR=addr,
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK="0",
    )


class RankActor:
    """Base of rank actors: cheap constructor; the heavy set-up runs in `setup`."""

    def rendezvous(self) -> tuple[str, int]:
        import ray

        addr = ray.util.get_node_ip_address()
        return addr, free_port(addr)

    def ready(self) -> bool:
        return True


def start_rank_group(cls: type, world: int, rank_cpus: float, env: dict, *args) -> tuple:
    """Create `world` actors of `cls` and start `setup(rank, world, addr, port, *args)` on each.

    Returns (actors, setup ObjectRefs); wait on the refs before using the group."""
    import ray

    actor = ray.remote(num_cpus=rank_cpus, runtime_env={"env_vars": env})(cls)
    ranks = [actor.remote() for _ in range(world)]
    addr, port = ray.get(ranks[0].rendezvous.remote())
    setups = [r.setup.remote(i, world, addr, port, *args) for i, r in enumerate(ranks)]
    return ranks, setups


def stop_rank_group(ranks: list) -> None:
    """Barrier + destroy the process group on every rank (a rank aborted otherwise), then kill."""
    import ray

    try:
        ray.get([r.shutdown.remote() for r in ranks], timeout=60)
    finally:
        for r in ranks:
            ray.kill(r)
