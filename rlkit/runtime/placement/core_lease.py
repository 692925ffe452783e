"""Core lending on CPU: an asynchronous trainer borrows the rollout workers' cores while they idle.

With the disaggregated placement (`auto` for async) every stage keeps the cores it reserved: on
2 cores a trainer rank trains on one thread while the rollout worker's core idles once the
samples of the next step are generated (`perf/rollout_busy_frac` 0.2-0.4 in the SmolLM2
benchmark).  Sharing the cores instead (colocated threads) oversubscribes them: OpenMP teams
run at the pace of their slowest thread, and async ran 12 % above the bound.  Lending keeps each
stage on its own cores while both work and gives the trainer every core while the rollout
waits:

- the controller of the async loop tells a `CoreLease` actor whether any request is still being
  generated (`LeaseSignal.update`, one message per change);
- a trainer rank asks it before each forward and each backward (one local actor call, ~1 ms)
  and sets its torch threads to `RankThreads.idle_threads` (every core's share, as colocated)
  or `RankThreads.threads` (its reserved CPUs; rlkit.runtime.placement.threads);
- the rank logs `perf/train_borrowed_frac`, the fraction of passes that ran on borrowed cores.

Used when the placement resolves to `disaggregated`, the loop is asynchronous and the trainer
runs on CPU (`lends_cores`); on GPU the stages do not share a compute resource.
"""

from __future__ import annotations

from typing import Any

from rlkit.runtime.placement.threads import lends_cores


class CoreLease:
    """Ray actor body: whether the rollout workers are idle (every sample generated)."""

    def __init__(self) -> None:
        self._idle = False

    def set_idle(self, idle: bool) -> None:
        self._idle = bool(idle)

    def rollout_idle(self) -> bool:
        return self._idle


def start_lease(cfg: Any) -> Any:
    """When the recipe lends cores (`lends_cores`): one `CoreLease` actor (no CPU reserved: it
    holds a flag), handed to the trainer group (its ranks read it) and, as a `LeaseSignal`, to
    the controller (its async loop sets it).  The run kills it at its end.  Else None."""
    if not lends_cores(cfg):
        return None
    import ray

    return ray.remote(num_cpus=0)(CoreLease).remote()


class LeaseSignal:
    """The controller's side: sends the idle flag when it changes (fire and forget)."""

    def __init__(self, lease: Any):
        self.lease = lease
        self._last: bool | None = None

    def update(self, idle: bool) -> None:
        if idle != self._last:
            self._last = idle
            self.lease.set_idle.remote(idle)


class ThreadPicker:
    """The trainer rank's side: before each pass, the thread count the lease allows."""

    def __init__(self, lease: Any, threads: int, idle_threads: int):
        self.lease, self.threads, self.idle_threads = lease, threads, idle_threads
        self.passes = self.borrowed = 0

    def __call__(self) -> None:
        import ray
        import torch

        idle = bool(ray.get(self.lease.rollout_idle.remote()))
        n = self.idle_threads if idle else self.threads
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        self.passes += 1
        self.borrowed += int(idle and n > self.threads)

    def metrics(self) -> dict[str, float]:
        return {"perf/train_borrowed_frac": self.borrowed / max(1, self.passes)}
