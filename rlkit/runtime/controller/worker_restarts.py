"""Replacing a dead rollout worker (issue 12, point 1).

When a worker's `run` call fails with Ray's actor-death error (the process was OOM-killed,
`kill -9`ed, its node left), the controller (rlkit.runtime.controller.loops) asks this class for a
replacement at the same index: a new worker actor on the run's model folder, loaded with the
last weights the WeightPublisher sent and their version, so every request it serves is stamped
with the current policy version.  The dead worker's groups are then re-issued by the rollout
scheduler (`RolloutScheduler.reissue`: same request ids and sample seeds).

At most `rollout.max_worker_restarts` replacements per run; one more death raises
`RolloutWorkerLost` naming the worker, the error and the count.  NCCL weight sync has no way to
add a member to its broadcast group: a death there stops the run at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


class RolloutWorkerLost(RuntimeError):
    """A rollout worker died and may not be replaced."""


def is_actor_death(exc: BaseException) -> bool:
    """Ray's error for a call on a dead actor (ActorDiedError, ActorUnavailableError), or for
    the call that was running when Ray's memory monitor killed the actor's process
    (OutOfMemoryError: the actor is gone too; its text names the actor's class)."""
    import ray.exceptions as rex

    return isinstance(exc, (rex.RayActorError, rex.ActorUnavailableError, rex.OutOfMemoryError))


class WorkerRestarts:
    def __init__(
        self,
        workers: list,
        publisher: Any,
        start_worker: Callable[[], Any],
        max_restarts: int,
        log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    ):
        self.workers, self.publisher = workers, publisher
        self.start_worker, self.max_restarts, self.log = start_worker, max_restarts, log
        self.count = 0
        self.started: list = []  # replacements this run started (ended by `close`)
        self.seconds: list[float] = []  # time to start each replacement and queue its weights

    def replace(self, index: int, error: BaseException) -> Any:
        """Start worker `index`'s replacement with the current weights; returns it."""
        detail = " ".join(str(error).split())[:300]  # one line, whatever Ray's message holds
        what = f"rollout worker {index} died ({type(error).__name__}: {detail})"
        if self.publisher.mode == "nccl":
            raise RolloutWorkerLost(f"{what}; no restart with trainer.weight_sync: nccl") from error
        if self.count >= self.max_restarts:
            raise RolloutWorkerLost(
                f"{what}; {self.count} worker restart(s) done, rollout.max_worker_restarts = "
                f"{self.max_restarts}: stopping the run"
            ) from error
        t0 = time.perf_counter()
        self._forget(self.workers[index])
        worker = self.start_worker()
        version = self.publisher.send_last(worker)
        self.workers[index] = worker
        self.started.append(worker)
        self.count += 1
        self.seconds.append(time.perf_counter() - t0)
        self.log(
            f"[rlkit] {what}; started a replacement at policy version {version} "
            f"(restart {self.count} of at most {self.max_restarts})"
        )
        return worker

    def state_dict(self) -> dict[str, int]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restarts of the run before its resume count against `max_restarts` too."""
        self.count = state["count"]

    @staticmethod
    def _forget(actor: Any) -> None:
        import ray

        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already gone
            pass

    def close(self) -> None:
        """End the replacements this run started (their engines are the run's own)."""
        for actor in self.started:
            self._forget(actor)
