"""The two training loops over the same Spine operations.

`run_sync`: generate a full batch, reward it, train, sync weights; repeat.  The reference.
`run_async`: the ROLL Flash controller.  Rollout workers keep generating while the trainer
trains; groups are admitted under the staleness bound (alpha), each sample's reward starts the
moment it finishes, over-stale groups are aborted or dropped and counted.  With alpha = 0 the
admission rule admits exactly one batch per version and only after the new weights were sent, so
it performs the same requests, batches and updates as `run_sync` (tests/integration check the
losses are equal).

Both loops survive a rollout worker's death (`_collect`): the worker is replaced with the current
weights and its groups are re-issued with their seeds (rlkit.runtime.controller.worker_restarts).
"""

from __future__ import annotations

import time

from rlkit.runtime.controller.spine import Spine
from rlkit.runtime.controller.worker_restarts import is_actor_death


def _dispatch(sp: Spine, inflight: dict, new: dict, aborts: dict, max_wait_s: float) -> None:
    """Give every idle worker that has work one `run` call."""
    busy = {g.worker for g in sp.rollout.running.values()}
    for w, worker in enumerate(sp.workers):
        if w in inflight or not (new.get(w) or aborts.get(w) or w in busy):
            continue
        reqs = new.pop(w, [])
        sp.timeline.sent(reqs, sp.rollout.worker_version)
        inflight[w] = worker.run.remote(reqs, aborts.pop(w, []), max_wait_s)
        sp.recorder.rollout_clock.ask(w, worker)  # its busy time, read when the call is back


def _collect(sp: Spine, inflight: dict, new: dict, timeout: float, aborts: dict | None = None):
    """Wait until a worker call is ready (at most `timeout`); hand finished requests over and
    queue the follow-up requests they produce (multi-turn strategies).  A call that failed
    because its worker died gets the worker replaced and its groups re-issued there."""
    import ray

    calls = list(inflight.values())
    if not calls:
        return
    ray.wait(calls, num_returns=1, timeout=timeout)
    done = set(ray.wait(calls, num_returns=len(calls), timeout=0)[0])
    for w, ref in list(inflight.items()):
        if ref not in done:
            continue
        del inflight[w]
        try:
            finished = ray.get(ref)
        except Exception as exc:
            if not is_actor_death(exc):
                raise
            sp.recorder.rollout_clock.drop(w)
            # the dead engine's queue is gone: everything still owed goes to the replacement
            new[w] = sp.replace_worker(w, exc)
            (aborts or {}).pop(w, None)
            continue
        sp.recorder.rollout_clock.collect(w)
        sp.timeline.finished(w, finished)
        for worker, reqs in sp.rollout.on_finished(finished).items():
            new.setdefault(worker, []).extend(reqs)


def _settle(sp: Spine, inflight: dict) -> None:
    """End of a run: let the last calls finish and drop what is still in flight (a worker that
    died meanwhile has nothing left to drop)."""
    import ray

    for ref in [*inflight.values(), *(w.abort_all.remote() for w in sp.workers)]:
        try:
            ray.get(ref)
        except Exception as exc:
            if not is_actor_death(exc):
                raise


def run_sync(sp: Spine) -> list[dict]:
    """Synchronous on-policy training: the reference that alpha = 0 must reproduce."""
    ro = sp.rollout
    inflight: dict = {}
    while sp.step < sp.total_steps:
        new: dict = ro.take_resumed()  # after a resume: the restored groups' requests first
        t0, t_gen = time.perf_counter(), None
        while len(ro.buffer) < sp.groups_per_step:
            # A batch's worth of groups; more when dynamic sampling filtered some out.
            for _ in range(sp.groups_per_step - len(ro.buffer) - len(ro.running)):
                group, reqs = ro.new_group()
                new.setdefault(group.worker, []).extend(reqs)
            _dispatch(sp, inflight, new, {}, max_wait_s=5.0)
            _collect(sp, inflight, new, timeout=sp.poll_s)
            if t_gen is None and not inflight and ro.all_generated():
                t_gen = time.perf_counter() - t0
            ro.poll_rewards(wait_s=0.0 if inflight else sp.poll_s)
        t_gen = time.perf_counter() - t0 if t_gen is None else t_gen
        # Stage times of the synchronous loop: the benchmark's ideal-overlap bound uses them.
        stats = {"time/rollout_s": t_gen, "time/reward_tail_s": time.perf_counter() - t0 - t_gen}
        sp.finish_train(sp.start_train(ro.take_batch(sp.step), stats))
    return sp.recorder.history


def run_async(sp: Spine, max_wait_s: float = 0.2) -> list[dict]:
    """Asynchronous training with bounded staleness (see module docstring)."""
    import concurrent.futures as cf

    ro = sp.rollout
    inflight: dict = {}
    new: dict = ro.take_resumed()  # after a resume: the restored groups' requests first
    aborts: dict = {}
    train = None  # the Future of the step in progress
    while sp.step < sp.total_steps:
        for _ in range(ro.staleness.capacity(ro.worker_version)):
            group, reqs = ro.new_group()
            new.setdefault(group.worker, []).extend(reqs)
        _dispatch(sp, inflight, new, aborts, max_wait_s)
        _collect(sp, inflight, new, sp.poll_s, aborts)
        if sp.lease_signal is not None:  # the trainer may borrow idle rollout cores
            sp.lease_signal.update(ro.all_generated())
        ro.poll_rewards(wait_s=0.0 if inflight else sp.poll_s)
        if train is not None and not inflight:  # nothing to collect: wait on the step a bit
            cf.wait([train], timeout=sp.poll_s)
        if train is not None and train.done():
            sp.finish_train(train)
            train = None
            for w, ids in ro.abort_stale(sp.step).items():
                sp.timeline.aborted(w, ids)
                aborts.setdefault(w, []).extend(ids)
        if train is None and sp.step < sp.total_steps:
            groups = ro.take_batch(sp.step)
            if groups is not None:
                train = sp.start_train(groups)
    _settle(sp, inflight)
    return sp.recorder.history
