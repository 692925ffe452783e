"""The rollout queue in a checkpoint (issue 23, item 1): nothing admitted is lost to a resume.

`snapshot(scheduler)` is taken at the controller's step boundary, with the weights of the same
policy version (rlkit.runtime.checkpoints writes it as `queue.pkl` beside `run_state.json`).
It holds, as plain Python values copied at that moment (the live groups go on changing while
the file is written in the background):

    buffer        finished, rewarded groups: prompt, admission version, worker, every sample's
                  token ids, behaviour log-probs, loss mask, turns, reward, components, version
    running       groups still generating: the same for their finished samples, and the ids of
                  their requests in flight (regenerated on resume: same request ids and seeds)
    rewards       a sample whose reward was still being computed keeps the fields its reward
                  call got; a reward already finished but not yet collected is kept as a result
    sample maps   first-turn versions and strategy reward fields of unfinished samples
    trained_ids   every group id handed to the trainer (no group is trained twice, across runs)

`restore(scheduler, state)` puts the groups back with their ids and recorded versions,
re-scores the samples whose reward was pending, makes the requests of the running groups again
(`RolloutScheduler.requests_again`: the strategy's own requests, same seeds; a strategy that
works off-thread, multi-turn, restarts an unfinished group: its environments are not saved),
and applies the staleness rule by the recorded versions (too stale: aborted through the normal
path, counted as aborted).  The partial outputs of requests in flight are not saved: those
requests are generated again from their start, at the resumed weights, and counted
(`resume/regenerated_requests`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rlkit.engines.rollout_protocol import Completion
from rlkit.runtime.controller.groups import Group, Prompt, Sample

FORMAT = 1


def snapshot(ro: Any) -> dict:
    """The scheduler's queue as plain values (see the module docstring)."""
    results = _finished_rewards(ro.reward_futures)
    return {
        "format": FORMAT,
        "buffer": [_group_state(g, results) for g in ro.buffer],
        "running": [_group_state(g, results) for g in ro.running.values()],
        "sample_versions": [[g, j, v] for (g, j), v in ro.sample_versions.items()],
        "extra_fields": [[g, j, dict(f)] for (g, j), f in ro.extra_fields.items()],
        "trained_ids": sorted(ro.trained_ids),
    }


def _finished_rewards(reward_futures: list) -> dict[tuple[int, int], Any]:
    """Rewards that are computed but not yet collected by `poll_rewards`."""
    out = {}
    for group, idx, futs in reward_futures:
        for j, fut in zip(idx, futs):
            if fut.done() and fut.exception() is None:
                out[(group.group_id, j)] = fut.result()
    return out


def _group_state(g: Group, results: dict) -> dict:
    samples = []
    for j, s in sorted(g.samples.items()):
        d = dataclasses.asdict(s)  # a deep copy
        res = results.get((g.group_id, j))
        if d["reward"] is None and res is not None:
            d.update(reward=res.score, components=dict(res.components))
            d.update(reward_failed=res.failed, token_scores=res.token_scores)
        samples.append(d)
    return {
        "group_id": g.group_id,
        "prompt": dataclasses.asdict(g.prompt),
        "size": g.size,
        "start_version": g.start_version,
        "worker": g.worker,
        "samples": samples,
        "requests": sorted(g.requests),
    }


def group_from_state(d: dict, num_workers: int) -> Group:
    """A Group as `_group_state` recorded it (`worker` wrapped onto the resumed run's workers)."""
    samples = {}
    for s in d["samples"]:
        s = dict(s)
        s["completion"] = Completion(**s["completion"])
        samples[s["index"]] = Sample(**s)
    return Group(
        d["group_id"],
        Prompt(**d["prompt"]),
        d["size"],
        d["start_version"],
        d["worker"] % max(1, num_workers),
        samples,
        set(d["requests"]),
    )


def restore(ro: Any, state: dict) -> dict[str, float]:
    """Put the queue of `state` back into `ro` (a RolloutScheduler whose counters were just
    restored); returns the `resume/*` metrics of the first record after the resume."""
    if state.get("format") != FORMAT:
        raise ValueError(f"queue.pkl: unknown format {state.get('format')!r}")
    ro.trained_ids = set(state["trained_ids"])
    ro.sample_versions = {(g, j): v for g, j, v in state["sample_versions"]}
    ro.extra_fields = {(g, j): f for g, j, f in state["extra_fields"]}
    for d in state["buffer"]:
        ro.buffer.put(group_from_state(d, ro.num_workers))
    for d in state["running"]:
        g = group_from_state(d, ro.num_workers)
        ro.running[g.group_id] = g
    ro.staleness.running, ro.staleness.buffered = len(ro.running), len(ro.buffer)
    note = {
        "resume/groups_lost": float(ro.next_group_id - sum(ro.counts()[k] for k in ENDED_OR_LIVE)),
        "resume/restored_buffered": float(len(ro.buffer)),
        "resume/restored_running": float(len(ro.running)),
    }
    before = ro.staleness.aborted_stale
    ro.abort_stale(ro.worker_version)  # nothing was sent yet: no request to abort
    rescored = regenerated = restarted = 0
    for g in list(ro.running.values()):
        reqs, restart = [], False
        if not g.generated:  # a generated group waits for rewards only
            fresh_start = _forget_progress(ro, g)
            reqs, restart = ro.requests_again(g)
            restart = restart or fresh_start
        rescored += _rescore(ro, g)
        restarted += restart
        regenerated += len(reqs)
        ro.resumed.setdefault(g.worker, []).extend(reqs)
        ro._retire_if_done(g)  # every reward was in: to the buffer (or filtered)
    return {
        **note,
        "resume/aborted_groups": float(ro.staleness.aborted_stale - before),
        "resume/regenerated_requests": float(regenerated),
        "resume/restarted_groups": float(restarted),
        "resume/rescored_samples": float(rescored),
    }


ENDED_OR_LIVE = ("running", "buffered", "consumed", "aborted", "dropped", "filtered", "failed")


def _forget_progress(ro: Any, g: Group) -> bool:
    """A strategy with work off the controller thread (`poll`: multi-turn environments) keeps
    per-group state a checkpoint does not hold: its running groups start again from scratch
    (same group id, admission version and seeds).  Returns whether `g` did."""
    if not hasattr(ro.strategy, "poll"):
        return False
    g.samples.clear()
    g.requests = set()
    for d in (ro.sample_versions, ro.extra_fields):
        for key in [k for k in d if k[0] == g.group_id]:
            del d[key]
    return True


def _rescore(ro: Any, g: Group) -> int:
    """Submit again the rewards that were pending at the checkpoint (a sample with the fields of
    its reward call and no reward); returns how many."""
    idx = [j for j, s in sorted(g.samples.items()) if s.reward is None and s.reward_fields]
    if not idx:
        return 0
    samples = [g.samples[j] for j in idx]
    futs = ro.rewards.submit_many(
        [g.prompt.text] * len(idx),
        [s.completion.text for s in samples],
        [dict(s.reward_fields) for s in samples],
    )
    ro.reward_futures.append((g, idx, futs))
    return len(idx)
