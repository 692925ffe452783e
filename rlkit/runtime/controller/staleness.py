"""The staleness bound of asynchronous training (ROLL Flash's async ratio alpha).

Invariant: a group consumed by the training step that updates policy version n -> n+1 was
*started* by a rollout worker holding version >= n - alpha.

Two mechanisms keep it, both from AReaL's StalenessManager / ROLL Flash:
1. Admission: a new group may start only while
       started_live < (alpha + v + 1) * B,
   where v is the version the rollout workers hold, B the groups per training step, and
   started_live counts groups consumed + buffered + running (dropped/aborted ones are not
   counted, so they get replaced).  The k-th admitted group (0-based, in start order) satisfies
   k < (alpha + v + 1) B, i.e. in FIFO consumption it trains at a step <= v + alpha.
2. Enforcement at consumption: because groups finish out of order, a straggler may be passed by
   younger groups; the buffer drops any group with start_version < n - alpha when step n takes
   its batch, and the controller aborts running groups that can no longer be used.

With alpha = 0 this admits exactly B groups per version and only after the workers hold the
new weights: the synchronous on-policy loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class StalenessManager:
    """Counts groups by state and answers how many more may start now."""

    alpha: int
    groups_per_step: int
    running: int = 0
    buffered: int = 0
    consumed: int = 0
    dropped_stale: int = 0
    aborted_stale: int = 0
    filtered: int = 0

    def capacity(self, worker_version: int) -> int:
        """How many new groups may start at `worker_version` without breaking the bound."""
        limit = (self.alpha + worker_version + 1) * self.groups_per_step
        return max(0, limit - (self.consumed + self.buffered + self.running))

    def on_start(self, n: int = 1) -> None:
        self.running += n

    def on_finish(self, n: int = 1) -> None:
        self.running -= n
        self.buffered += n

    def on_abort(self, n: int = 1) -> None:
        """In-flight groups aborted because they became too stale to ever be trained on."""
        self.running -= n
        self.aborted_stale += n

    def on_drop(self, n: int = 1) -> None:
        """Finished groups discarded from the buffer as too stale."""
        self.buffered -= n
        self.dropped_stale += n

    def on_filter(self, n: int = 1) -> None:
        """Finished groups discarded by dynamic sampling (no learning signal); refilled."""
        self.running -= n
        self.filtered += n

    def on_consume(self, n: int) -> None:
        self.buffered -= n
        self.consumed += n

    def state_dict(self) -> dict[str, int]:
        """The counters a checkpoint keeps; `running` and `buffered` are set back from the
        restored groups (rlkit.runtime.controller.queue_state.restore)."""
        return {
            "consumed": self.consumed,
            "dropped": self.dropped_stale,
            "aborted": self.aborted_stale,
            "filtered": self.filtered,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.consumed, self.dropped_stale = state["consumed"], state["dropped"]
        self.aborted_stale, self.filtered = state["aborted"], state["filtered"]
        self.running = self.buffered = 0

    @staticmethod
    def min_usable_version(train_version: int, alpha: int) -> int:
        """The oldest start version a group may have to be trained at `train_version`."""
        return train_version - alpha


class GroupBuffer:
    """Finished groups waiting for the trainer; hands out the oldest usable ones first."""

    def __init__(self) -> None:
        self._groups: list[Any] = []  # items have .group_id and .start_version

    def __len__(self) -> int:
        return len(self._groups)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._groups))

    def put(self, group: Any) -> None:
        self._groups.append(group)

    def clear(self) -> None:
        """Empty (a resume puts the checkpoint's groups back, queue_state.restore)."""
        self._groups = []

    def drop_stale(self, min_version: int) -> list[Any]:
        """Remove and return groups started before `min_version`."""
        stale = [g for g in self._groups if g.start_version < min_version]
        self._groups = [g for g in self._groups if g.start_version >= min_version]
        return stale

    def take(self, n: int) -> list[Any] | None:
        """The n oldest groups (by start order), or None when fewer than n are ready.

        Sorting by group id makes the batch independent of completion order, which is what
        lets alpha = 0 reproduce the synchronous loop exactly."""
        if len(self._groups) < n:
            return None
        self._groups.sort(key=lambda g: g.group_id)
        batch, self._groups = self._groups[:n], self._groups[n:]
        return batch
