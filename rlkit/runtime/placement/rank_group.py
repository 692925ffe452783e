"""Starting and stopping a group of Ray actors that form one torch.distributed group.

Rank 0's actor tells the others where to meet (its node's IP and a free port there), so the
group works across nodes of a cluster as well as on one machine's loopback; each rank joins
with rlkit.engines.dist_env.set_rank_env (which also keeps a loopback group on loopback).
"""

from __future__ import annotations

from rlkit.engines.dist_env import free_port


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
    when given (rlkit.runtime.placement.gpus).

    Returns (actors, setup ObjectRefs); wait on the refs before using the group."""
    import ray

    from rlkit.runtime.placement.gpus import in_bundle

    actor = ray.remote(num_cpus=rank_cpus, num_gpus=num_gpus, runtime_env={"env_vars": env})(cls)
    ranks = [actor.options(**in_bundle(bundles, r)).remote() for r in range(world)]
    addr, port = ray.get(ranks[0].rendezvous.remote())
    setups = [r.setup.remote(i, world, addr, port, *args) for i, r in enumerate(ranks)]
    return ranks, setups


def stop_rank_group(ranks: list) -> None:
    """Barrier + destroy the process group on every rank (a rank aborted otherwise), then kill.
    A group that lost a rank cannot pass a barrier: its survivors are only killed."""
    import ray

    from rlkit.runtime.controller.worker_restarts import is_actor_death

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
