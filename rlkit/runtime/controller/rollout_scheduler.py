"""Rollout scheduling: admitting groups, collecting finished requests, rewards, aborts, drops.

Plain Python over the rollout strategy, the reward pool and the staleness manager: nothing here
calls Ray, so it is unit-tested with fake workers (tests/unit/runtime/test_rollout_scheduler.py).
The loops (rlkit.runtime.controller.loops) move requests between it and the worker actors.

Accounting: every admitted group ends exactly once as consumed (trained), aborted (too stale in
flight), dropped (too stale in the buffer), filtered (no learning signal) or failed (the engine
refused a request); `counts()` reports them and `accounting_ok()` checks that they add up and
that no group was handed to the trainer twice.

A dead rollout worker's groups are re-issued, not dropped (`reissue`): they stay running, keep
their group ids, admission version and sample seeds, and go to the replacement worker.  A
checkpoint keeps the queue the same way (`queue_state`, rlkit.runtime.controller.queue_state):
a resume puts the buffered and running groups back and makes the running ones' requests again.
"""

from __future__ import annotations

import concurrent.futures as cf
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rlkit.runtime.controller.groups import Group, Prompt, Sample
from rlkit.runtime.controller.prompts import PromptStream
from rlkit.runtime.controller.staleness import GroupBuffer, StalenessManager
from rlkit.runtime.controller.strategies import RolloutStrategy, parse_request_id


class RolloutScheduler:
    def __init__(
        self,
        strategy: RolloutStrategy,
        prompts: Iterator[Prompt],
        rewards: Any,
        *,
        num_workers: int,
        alpha: int,
        groups_per_step: int,
        samples_per_prompt: int,
        accept: Callable[[Group], bool] = lambda g: True,
    ):
        self.strategy, self.rewards = strategy, rewards
        self.prompts = prompts if isinstance(prompts, PromptStream) else PromptStream(prompts)
        self.num_workers, self.alpha, self.size = num_workers, alpha, samples_per_prompt
        self.groups_per_step, self.accept = groups_per_step, accept
        self.staleness = StalenessManager(alpha, groups_per_step)
        self.buffer = GroupBuffer()
        self.running: dict[int, Group] = {}
        self.reward_futures: list[tuple[Group, list[int], Any]] = []
        self.next_group_id = 0
        self.worker_version = 0  # version whose weights were sent to every worker
        self.failed_groups = 0
        self.step_tokens = 0
        self.reissued_groups = 0
        self.trained_ids: set[int] = set()  # every group handed to the trainer
        self.trained_twice = 0
        self.resumed: dict[int, list] = {}  # requests of the groups a resume put back
        # (group id, sample index) -> version its first request started at (a multi-turn
        # sample is stamped with its first turn's) / extra reward fields from the strategy
        self.sample_versions: dict[tuple[int, int], int] = {}
        self.extra_fields: dict[tuple[int, int], dict] = {}

    # ---- admission ----
    def new_group(self) -> tuple[Group, list]:
        """Admit the next prompt as a group on the least-loaded worker; returns its requests."""
        load = [0] * self.num_workers
        for g in self.running.values():
            load[g.worker] += 1
        worker = min(range(self.num_workers), key=lambda w: (load[w], w))
        group = Group(
            self.next_group_id, next(self.prompts), self.size, self.worker_version, worker
        )
        self.next_group_id += 1
        self.running[group.group_id] = group
        self.staleness.on_start()
        reqs = self.strategy.requests(group)
        group.requests = {r.request_id for r in reqs}
        return group, reqs

    # ---- finished requests and rewards ----
    def on_finished(self, finished: list) -> dict[int, list]:
        """Record finished requests and what the strategy finished off-thread (its `poll`:
        environment steps); start rewards (per sample, or per group when the strategy scores
        whole groups).  Returns follow-up requests per worker (multi-turn strategies)."""
        follow: dict[int, list] = {}
        for f in finished:
            gid, j = parse_request_id(f.request_id)
            group = self.running.get(gid)
            if group is None or f.completion.finish_reason == "abort":
                continue  # its group was aborted as too stale
            if f.completion.finish_reason == "error":  # the engine refused the request
                self._drop_failed(group, f.completion.text)
                continue
            group.requests.discard(f.request_id)
            group.start_version = min(group.start_version, f.start_version)
            first = self.sample_versions.setdefault((gid, j), f.start_version)
            self.sample_versions[(gid, j)] = min(first, f.start_version)
            self._apply(group, self.strategy.on_finished(group, f.request_id, f.completion), follow)
        for gid, out in getattr(self.strategy, "poll", list)():
            if gid in self.running:
                self._apply(self.running[gid], out, follow)
        return follow

    def _apply(self, group: Group, out: Any, follow: dict[int, list]) -> None:
        """One strategy Outcome: samples stamped with their first request's version, reward
        fields kept for the reward call, follow-ups queued for the group's worker."""
        if out.error is not None:
            self._drop_failed(group, out.error)
            return
        for j, completion in out.samples:
            version = self.sample_versions.pop((group.group_id, j), group.start_version)
            group.samples[j] = Sample(j, completion, version)
            self.step_tokens += len(completion.token_ids)
        for j, extra in out.fields.items():
            self.extra_fields[(group.group_id, j)] = extra
        for req in out.follow_up:
            group.requests.add(req.request_id)
            follow.setdefault(group.worker, []).append(req)
        self._submit_rewards(group, [j for j, _ in out.samples])

    def _forget(self, group: Group) -> None:
        """A group that ended early (aborted, failed): the strategy and the per-sample maps drop
        it."""
        gid = group.group_id
        getattr(self.strategy, "drop", lambda _: None)(gid)
        for d in (self.sample_versions, self.extra_fields):
            for key in [k for k in d if k[0] == gid]:
                del d[key]

    def strategy_metrics(self) -> dict[str, float]:
        """The strategy's own metrics for this step (multi-turn: env/...), if it has any."""
        return getattr(self.strategy, "take_metrics", dict)()

    def _submit_rewards(self, group: Group, new: list[int]) -> None:
        if self.strategy.reward_scope == "group":
            if not group.generated:
                return
            new = sorted(group.samples)
        if not new:
            return
        texts = [group.samples[j].completion for j in new]
        fields = [
            {**group.prompt.fields, "num_tokens": len(c.token_ids),
             **self.extra_fields.pop((group.group_id, j), {})}
            for j, c in zip(new, texts)
        ]  # fmt: skip
        if self.strategy.reward_scope == "group":  # group rewards see each sample's rank
            fields = [{**f, "rank": j} for f, j in zip(fields, new)]
        for j, f in zip(new, fields):
            group.samples[j].reward_fields = f
        futs = self.rewards.submit_many(
            [group.prompt.text] * len(new), [c.text for c in texts], fields
        )
        self.reward_futures.append((group, new, futs))

    def _drop_failed(self, group: Group, error: str) -> None:
        """A group the engine could not serve is dropped, counted, logged once; a new one
        takes its slot."""
        del self.running[group.group_id]
        self._forget(group)
        self.staleness.on_filter()
        self.failed_groups += 1
        self.reward_futures = [t for t in self.reward_futures if t[0] is not group]
        if self.failed_groups == 1:
            print(
                f"[rlkit] dropping a group the rollout engine refused ({error}); further "
                f"ones are counted in rollout/failed_groups",
                file=sys.stderr,
            )

    def poll_rewards(self, wait_s: float = 0.0) -> int:
        """Move groups whose every sample is generated and rewarded into the buffer."""
        if wait_s and self.reward_futures:
            cf.wait(
                [f for _, _, fs in self.reward_futures for f in fs],
                timeout=wait_s,
                return_when=cf.FIRST_COMPLETED,
            )
        pending, completed = [], 0
        for group, idx, futs in self.reward_futures:
            if not all(f.done() for f in futs):
                pending.append((group, idx, futs))
                continue
            for j, fut in zip(idx, futs):
                res, s = fut.result(), group.samples[j]
                s.reward, s.components, s.reward_failed = res.score, res.components, res.failed
                s.token_scores = res.token_scores
            completed += self._retire_if_done(group)
        self.reward_futures = pending
        return completed

    def _retire_if_done(self, group: Group) -> int:
        if not group.done or group.group_id not in self.running:
            return 0
        del self.running[group.group_id]
        if not self.accept(group):  # DAPO dynamic sampling: no learning signal
            self.staleness.on_filter()
            return 0
        self.staleness.on_finish()
        self.buffer.put(group)
        return 1

    def all_generated(self) -> bool:
        """True when every running group has all its samples (rewards may be pending)."""
        return all(g.generated for g in self.running.values())

    # ---- worker failure ----
    def reissue(self, worker: int) -> list:
        """Requests to give `worker`'s replacement: its running groups' outstanding ones, made
        again by the strategy (`requests_again`)."""
        reqs: list = []
        for g in self.running.values():
            if g.worker != worker:
                continue
            mine, _ = self.requests_again(g)
            self.reissued_groups += bool(mine)
            reqs += mine
        return reqs

    def requests_again(self, g: Group) -> tuple[list, bool]:
        """Running group `g`'s outstanding requests made again by the strategy (same request
        ids and seeds, so the same samples at the same weights); finished samples are kept.  A
        group with a request the strategy does not make up front (a later turn of a multi-turn
        strategy) restarts from scratch (the bool says so)."""
        fresh = self.strategy.requests(g)
        restart = not g.requests <= {r.request_id for r in fresh}
        if restart:
            g.samples.clear()
            self.sample_versions = {
                k: v for k, v in self.sample_versions.items() if k[0] != g.group_id
            }
            self.reward_futures = [t for t in self.reward_futures if t[0] is not g]
            g.requests = {r.request_id for r in fresh}
        return [r for r in fresh if r.request_id in g.requests], restart

    def take_resumed(self) -> dict[int, list]:
        """The requests of the groups a resume put back (per worker), once (the loops send them
        first)."""
        resumed, self.resumed = self.resumed, {}
        return resumed

    # ---- staleness ----
    def abort_stale(self, train_version: int) -> dict[int, list[str]]:
        """Abort running groups that can no longer be trained on; request ids per worker."""
        min_version = self.staleness.min_usable_version(train_version, self.alpha)
        aborts: dict[int, list[str]] = {}
        for gid, g in list(self.running.items()):
            if g.start_version < min_version:
                aborts.setdefault(g.worker, []).extend(sorted(g.requests))
                del self.running[gid]
                self._forget(g)
                self.staleness.on_abort()
        self.reward_futures = [t for t in self.reward_futures if t[0].group_id in self.running]
        return aborts

    def take_batch(self, train_version: int) -> list[Group] | None:
        """The oldest `groups_per_step` usable groups, or None; too-stale ones are dropped."""
        min_version = self.staleness.min_usable_version(train_version, self.alpha)
        self.staleness.on_drop(len(self.buffer.drop_stale(min_version)))
        groups = self.buffer.take(self.groups_per_step)
        if groups is not None:
            self.staleness.on_consume(len(groups))
            ids = {g.group_id for g in groups}
            self.trained_twice += len(ids & self.trained_ids) + len(groups) - len(ids)
            self.trained_ids |= ids
        return groups

    # ---- checkpoints (rlkit.runtime.controller.queue_state) ----
    def state_dict(self) -> dict:
        """The counters and positions a checkpoint keeps (JSON); the groups themselves are
        `queue_state()`, saved beside it."""
        return {
            "next_group_id": self.next_group_id,
            "worker_version": self.worker_version,
            "failed": self.failed_groups,
            "reissued": self.reissued_groups,
            "trained_twice": self.trained_twice,
            "staleness": self.staleness.state_dict(),
            "prompts": self.prompts.state_dict([]),
        }

    def queue_state(self) -> dict:
        """The buffered and running groups, pending rewards and trained ids, copied now."""
        from rlkit.runtime.controller.queue_state import snapshot

        return snapshot(self)

    def load_state_dict(self, state: dict, queue: dict | None = None) -> dict[str, float]:
        """Continue where `state_dict` / `queue_state` left off (before any group is admitted);
        returns the resume's `resume/*` metrics.  A checkpoint without a queue (written before
        the queue was saved) had its running and buffered groups counted as aborted and their
        prompts queued again: they are reported as lost."""
        from rlkit.runtime.controller.queue_state import restore

        self.next_group_id, self.worker_version = state["next_group_id"], state["worker_version"]
        self.failed_groups, self.reissued_groups = state["failed"], state["reissued"]
        self.trained_twice = state.get("trained_twice", 0)
        self.staleness.load_state_dict(state["staleness"])
        self.buffer.clear()
        self.prompts.load_state_dict(state["prompts"])
        if queue is None:
            return {"resume/groups_lost": float(len(state["prompts"]["again"]))}
        return restore(self, queue)

    def counts(self) -> dict[str, int]:
        """Where every admitted group is now or ended (they add up to `admitted`)."""
        st = self.staleness
        return {
            "admitted": self.next_group_id,
            "running": len(self.running),
            "buffered": len(self.buffer),
            "consumed": st.consumed,
            "aborted": st.aborted_stale,
            "dropped": st.dropped_stale,
            "filtered": st.filtered - self.failed_groups,
            "failed": self.failed_groups,
        }

    def accounting_ok(self) -> bool:
        """admitted = running + buffered + consumed + aborted + dropped + filtered + failed,
        and no group trained twice."""
        c = self.counts()
        ended = sum(c[k] for k in ("consumed", "aborted", "dropped", "filtered", "failed"))
        return ended + c["running"] + c["buffered"] == c["admitted"] and not self.trained_twice
