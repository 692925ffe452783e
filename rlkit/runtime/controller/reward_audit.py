"""Reward audit: every step, recompute the rewards of a few trained samples and compare.

A reward credited to the wrong sample (an index mix-up between the samples sent to the reward
functions and the scores written back) trains silently on noise; a published reproduction of a
generative-recommendation line found exactly that.  The audit re-scores a seeded sample of the
rows handed to the trainer from what the sample itself holds (its prompt text, its completion
text and the reward fields its reward call was given) with the same reward functions, weights
and fallback, and compares with the reward it was trained on (docs/rewards.md, "Reward audit").

    audit/rows              rows compared in this record (their re-scores finished since the
                            previous record)
    audit/reward_mismatch   rows among them whose recomputed score or components differ from
                            the trained ones (beyond 1e-6): 0 expected for deterministic rewards

Off the critical path: the re-scoring runs on a private one-thread pool (`RewardPool`,
mode "thread": its own counters, so reward/* metrics count the training samples only); the
controller only picks the rows and enqueues them, and each record reports the re-scores that
finished by then.  Rows whose trained reward failed (fallback used) are not audited, nor are
rows whose re-score failed: a failure is not a mis-assignment.  Group-scope strategies (reward
functions that see the whole group, e.g. ReRe's rank reward) are audited a whole group at a
time, in one call, with the same `rank` fields as the original call.
"""

from __future__ import annotations

import math
import random
import sys
from concurrent.futures import Future
from typing import Any

from rlkit.rewards.pool import RewardPool
from rlkit.rewards.types import RewardResult

ROWS_PER_STEP = 4  # cheap: a handful of reward calls per step
TOLERANCE = 1e-6


class RewardAudit:
    def __init__(
        self,
        pool: RewardPool,
        *,
        seed: int,
        group_scope: bool = False,
        rows_per_step: int = ROWS_PER_STEP,
    ):
        """`pool`: the private pool that re-scores (`for_pool` builds it from the run's);
        `group_scope`: the strategy scores whole groups (audit one whole group per step)."""
        self.pool, self.group_scope, self.rows_per_step = pool, group_scope, rows_per_step
        self.rng = random.Random(seed)
        # (trained reward, trained components, future of the re-score) per audited row
        self.pending: list[tuple[float, dict[str, float], Future[RewardResult]]] = []
        self.mismatches_total = 0

    @classmethod
    def for_pool(cls, rewards: Any, *, seed: int, group_scope: bool) -> RewardAudit | None:
        """An audit re-scoring with `rewards`' functions, or None when `rewards` is not a
        RewardPool (tests that stub the rewards out)."""
        if not isinstance(rewards, RewardPool):
            return None
        private = RewardPool(
            rewards.specs,
            timeout_s=rewards.timeout_s,
            fallback=rewards.fallback,
            num_workers=1,
            mode="thread",
            models=getattr(rewards, "models", None),  # a judge's cached scores: the same values
        )
        return cls(private, seed=seed, group_scope=group_scope)

    def submit(self, groups: list) -> None:
        """Pick this step's rows among `groups` (the batch handed to the trainer) and start
        their re-scores."""
        if self.group_scope:
            chosen = [self.rng.choice(groups)] if groups else []
            for g in chosen:
                self._rescore(g, sorted(g.samples))
            return
        rows = [(g, j) for g in groups for j in sorted(g.samples)]
        rows = [(g, j) for g, j in rows if not g.samples[j].reward_failed]
        for g, j in self.rng.sample(rows, min(self.rows_per_step, len(rows))):
            self._rescore(g, [j])

    def _rescore(self, group: Any, idx: list[int]) -> None:
        samples = [group.samples[j] for j in idx]
        futures = self.pool.submit_many(
            [group.prompt.text] * len(samples),
            [s.completion.text for s in samples],
            [dict(s.reward_fields) for s in samples],
        )
        for s, fut in zip(samples, futures):
            if not s.reward_failed:
                self.pending.append((float(s.reward), dict(s.components), fut))

    def take(self) -> dict[str, float]:
        """`audit/rows` and `audit/reward_mismatch` over the re-scores finished since the last
        call (later ones count in a later record)."""
        done = [p for p in self.pending if p[2].done()]
        self.pending = [p for p in self.pending if not p[2].done()]
        rows = mismatches = 0
        for reward, components, fut in done:
            res = fut.result()
            if res.failed:
                continue
            rows += 1
            mismatches += not matches(reward, components, res)
        if mismatches and not self.mismatches_total:
            print(
                f"[rlkit] reward audit: {mismatches} of {rows} re-scored samples got a different "
                "reward than the one they were trained on (a reward credited to the wrong "
                "sample, or a non-deterministic reward); counted in audit/reward_mismatch",
                file=sys.stderr,
            )
        self.mismatches_total += mismatches
        return {"audit/rows": float(rows), "audit/reward_mismatch": float(mismatches)}

    def close(self) -> None:
        self.pool.close()


def matches(reward: float, components: dict[str, float], res: RewardResult) -> bool:
    """The trained score and components equal the re-scored ones (within TOLERANCE)."""
    if set(components) != set(res.components):
        return False
    pairs = [(reward, res.score), *((components[k], res.components[k]) for k in components)]
    return all(math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE) for a, b in pairs)
