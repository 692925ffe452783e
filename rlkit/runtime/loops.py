"""The two training loops over the same Spine operations.

`run_sync`: generate a full batch, reward it, train, sync weights; repeat.  The reference.
`run_async`: the ROLL Flash controller.  Rollout workers keep generating while the trainer
trains; groups are admitted under the staleness bound (alpha), each sample's reward starts the
moment it finishes, over-stale groups are aborted or dropped and counted.  With alpha = 0 the
admission rule admits exactly one batch per version and only after the new weights were sent, so
it performs the same requests, batches and updates as `run_sync` (tests/integration check the
losses are equal).
"""

from __future__ import annotations

import time

from rlkit.runtime.spine import Spine


def _dispatch(sp: Spine, inflight: dict, new: dict, aborts: dict, max_wait_s: float) -> None:
    """Give every idle worker that has work one `run` call."""
    busy = {g.worker for g in sp.running.values()}
    for w, worker in enumerate(sp.workers):
        if w in inflight or not (new.get(w) or aborts.get(w) or w in busy):
            continue
        inflight[w] = worker.run.remote(new.pop(w, []), aborts.pop(w, []), max_wait_s)


def _collect(sp: Spine, inflight: dict, timeout: float, extra: list | None = None) -> None:
    """Wait until a worker call (or one of `extra`) is ready; hand finished samples over."""
    import ray

    refs = list(inflight.values()) + list(extra or [])
    if not refs:
        return
    ray.wait(refs, num_returns=1, timeout=timeout)
    calls = list(inflight.values())
    done = set(ray.wait(calls, num_returns=len(calls), timeout=0)[0]) if calls else set()
    for w, ref in list(inflight.items()):
        if ref in done:
            sp.on_finished(ray.get(ref))
            del inflight[w]


def run_sync(sp: Spine) -> list[dict]:
    """Synchronous on-policy training: the reference that alpha = 0 must reproduce."""
    inflight: dict = {}
    while sp.step < sp.cfg.total_steps:
        new: dict = {}
        t0, t_gen = time.perf_counter(), None
        while len(sp.buffer) < sp.cfg.groups_per_step:
            # A batch's worth of groups; more when dynamic sampling filtered some out.
            for _ in range(sp.cfg.groups_per_step - len(sp.buffer) - len(sp.running)):
                group, reqs = sp.new_group()
                new.setdefault(group.worker, []).extend(reqs)
            _dispatch(sp, inflight, new, {}, max_wait_s=5.0)
            _collect(sp, inflight, timeout=sp.cfg.poll_s)
            if t_gen is None and not inflight and sp.all_generated():
                t_gen = time.perf_counter() - t0
            sp.poll_rewards(wait_s=0.0 if inflight else sp.cfg.poll_s)
        t_gen = time.perf_counter() - t0 if t_gen is None else t_gen
        groups = sp.take_batch()
        refs, stats = sp.start_train(groups)
        # Stage times of the synchronous loop: the benchmark's ideal-overlap bound uses them.
        stats["time/rollout_s"] = t_gen
        stats["time/reward_tail_s"] = time.perf_counter() - t0 - t_gen
        sp.finish_train(refs, stats)
    return sp.history


def run_async(sp: Spine, max_wait_s: float = 0.2) -> list[dict]:
    """Asynchronous training with bounded staleness (see module docstring)."""
    import ray

    inflight: dict = {}
    new: dict = {}
    aborts: dict = {}
    train: tuple[list, dict] | None = None
    while sp.step < sp.cfg.total_steps:
        for _ in range(sp.staleness.capacity(sp.worker_version)):
            group, reqs = sp.new_group()
            new.setdefault(group.worker, []).extend(reqs)
        _dispatch(sp, inflight, new, aborts, max_wait_s)
        _collect(sp, inflight, timeout=sp.cfg.poll_s, extra=train[0] if train else None)
        sp.poll_rewards()
        if train is not None and len(
            ray.wait(train[0], num_returns=len(train[0]), timeout=0)[0]
        ) == len(train[0]):
            sp.finish_train(*train)
            train = None
            for w, ids in sp.abort_stale().items():
                aborts.setdefault(w, []).extend(ids)
        if train is None and sp.step < sp.cfg.total_steps:
            groups = sp.take_batch()
            if groups is not None:
                train = sp.start_train(groups)
    ray.get(list(inflight.values()))  # let the last calls finish, then drop what is in flight
    ray.get([w.abort_all.remote() for w in sp.workers])
    return sp.history
