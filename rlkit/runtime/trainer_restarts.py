"""Bounded restarts of a failed trainer group (issue 23, item 4): `trainer.max_restarts`.

A DeepSpeed group cannot lose a rank and go on.  With `trainer.max_restarts: 0` (the default) a
dead trainer or critic rank stops the run with the command that resumes it
(`RankGroupLost`).  With N > 0 the controller does that resume itself, in the
same process, up to N times (the loop is rlkit.runtime.run.run_attempts; the steps are here):

1. the trainer group (which holds the reference model) and the critic group are killed (the
   survivors without waiting on a collective), then the save in flight, if any, is waited for:
   finished, it is the newest checkpoint; a part the dead rank never wrote leaves only the
   hidden temporary folder (the atomic rule);
2. new groups start on the same resources; the rollout workers, reward pool, evaluator and core
   lease are kept (no engine start-up), their requests in flight aborted and weights reset;
3. the run goes on from the newest resumable checkpoint exactly as `--resume` would
   (rlkit.runtime.resume.resume_from: trainer and critic state, the controller's state and the
   rollout queue of that checkpoint); without one it starts again from step 0.

So the controller's state rolls back to the checkpoint together with the weights: the steps
trained after it are trained again (their records are replaced, as on a resume) and the
generation done after it is lost; what the checkpoint held is kept as on any resume (at alpha = 0
the rest of the run is the uninterrupted one; at alpha > 0 its queue comes back).  Every
record after a restart carries `trainer/restarts`.  Not with `trainer.weight_sync: nccl` (the
rollout workers' broadcast group cannot take a new trainer): the run stops as with 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlkit.config import RecipeConfig


class RankGroupLost(RuntimeError):
    """A trainer (with its reference model) or critic process died: DeepSpeed groups cannot go
    on without a rank, so the run stops with the command that resumes it from its last
    checkpoint (or, with `trainer.max_restarts`, restarts the group).  `what`: what died, as
    `dead_actor_name` says."""

    def __init__(self, message: str, what: str = "") -> None:
        super().__init__(message)
        self.what = what


def dead_actor_name(exc: BaseException) -> str:
    """What died, from the actor class Ray names in the error: a trainer rank (which holds the
    reference model too), a critic rank, or (another actor) 'a process of the run'."""
    text = str(exc)
    for cls, name in (
        ("TrainerRank", "a trainer rank"),
        ("CriticRank", "a critic rank"),
    ):
        if cls in text:
            return name
    return "a process of the run"


def lost_rank(spine: Any, timeout_s: float = 10.0) -> str | None:
    """What died when the error that reached the controller is a survivor's: a rank whose peer
    was killed fails its collective (gloo: "Connection reset by peer"), and that error can come
    before the dead rank's.  Pings every trainer and critic rank; the group of a dead one, or
    None (a rank stuck in a collective does not answer within `timeout_s`: not dead)."""
    import ray

    from rlkit.runtime.controller.worker_restarts import is_actor_death

    for name, group in (("a trainer rank", spine.trainer), ("a critic rank", spine.critic)):
        ranks = getattr(group, "ranks", None) or []
        pings = [r.__ray_ready__.remote() for r in ranks]
        ready, _ = ray.wait(pings, num_returns=len(pings), timeout=timeout_s)
        for ref in ready:
            try:
                ray.get(ref)
            except Exception as exc:
                if is_actor_death(exc):
                    return name
    return None


def may_restart(cfg: RecipeConfig, exc: Any, done: int) -> bool:
    """A trainer or critic rank died, restarts are left, and the weights go by object store."""
    return (
        getattr(exc, "what", "") in ("a trainer rank", "a critic rank")
        and done < cfg.trainer.max_restarts
        and cfg.trainer.weight_sync != "nccl"
    )


def finish_pending_save(spine: Any) -> None:
    """Wait for the dead group's save in flight: finished, it is the newest checkpoint; failed
    (a rank died before writing its part), only its hidden temporary folder is left."""
    pending, spine.recorder.pending = spine.recorder.pending, None
    if pending is None:
        return
    try:
        pending.wait()
    except Exception:  # the dead rank's part never came: the previous checkpoint stands
        pass


def stop_trainer(parts: Any) -> None:
    """Kill the trainer and critic groups (survivors without waiting on a collective:
    rlkit.runtime.placement.rank_group.stop_rank_group)."""
    parts.trainer.shutdown()
    if parts.critic is not None:
        parts.critic.shutdown()


def start_trainer_side(
    cfg: RecipeConfig, parts: Any, model_path: str, start: Callable[[Any, int], tuple]
) -> None:
    """New trainer and critic groups on the same resources (`start(gpus, n_gpus)` -> (trainer,
    critic or None): rlkit.runtime.run's own), and the kept rollout workers reset (requests
    aborted, initial weights at version 0: the resume sends the checkpoint's, as a `--resume`
    with given workers does)."""
    from rlkit.runtime.placement import cluster
    from rlkit.runtime.placement.gpus import cluster_gpus, gpu_shares
    from rlkit.runtime.placement.hybrid import make_switch

    n_gpus = cluster_gpus()
    parts.trainer, parts.critic = start(gpu_shares(cfg, n_gpus), n_gpus)
    parts.switch = make_switch(parts.workers, parts.trainer, parts.bundles)
    cluster.reset_workers(parts.workers, model_path)
