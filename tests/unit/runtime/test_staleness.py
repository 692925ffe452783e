"""The staleness bound, property-based: under any completion order and train timing, no group
trained at version n was started before n - alpha; alpha = 0 admits one batch per version."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from rlkit.runtime.controller.staleness import GroupBuffer, StalenessManager


@dataclass
class G:
    group_id: int
    start_version: int


def simulate(alpha: int, per_step: int, steps: int, draws) -> list[tuple[int, int]]:
    """Drive the manager like the controller does; returns (train_version, start_version)."""
    sm, buf = StalenessManager(alpha, per_step), GroupBuffer()
    running: list[G] = []
    version, next_id, trained = 0, 0, []
    while version < steps:
        for _ in range(sm.capacity(version)):
            running.append(G(next_id, version))
            next_id += 1
            sm.on_start()
        action = draws(st.sampled_from(["finish", "train"]))
        if action == "finish" and running:
            g = running.pop(draws(st.integers(0, len(running) - 1)))  # any completion order
            sm.on_finish()
            buf.put(g)
        sm.on_drop(len(buf.drop_stale(version - alpha)))
        batch = buf.take(per_step)
        if action == "train" and batch is None and not running:
            continue
        if batch is not None:
            sm.on_consume(len(batch))
            trained += [(version, g.start_version) for g in batch]
            version += 1
            stale = [g for g in running if g.start_version < version - alpha]
            for g in stale:  # the controller aborts what can no longer be trained on
                running.remove(g)
                sm.on_abort()
    return trained


@settings(max_examples=150, deadline=None)
@given(alpha=st.integers(0, 3), per_step=st.integers(1, 4), data=st.data())
def test_no_trained_group_exceeds_alpha(alpha, per_step, data):
    trained = simulate(alpha, per_step, steps=6, draws=data.draw)
    assert len(trained) == 6 * per_step
    assert all(0 <= n - s <= alpha for n, s in trained)


@settings(max_examples=50, deadline=None)
@given(per_step=st.integers(1, 4), data=st.data())
def test_alpha_zero_is_on_policy(per_step, data):
    trained = simulate(0, per_step, steps=5, draws=data.draw)
    assert all(n == s for n, s in trained)


def test_capacity_formula():
    sm = StalenessManager(alpha=2, groups_per_step=4)
    assert sm.capacity(0) == 12  # (alpha + v + 1) * B
    sm.on_start(12)
    assert sm.capacity(0) == 0
    sm.on_finish(4)
    sm.on_consume(4)
    assert sm.capacity(1) == 4
    sm.on_abort(2)  # aborted groups are replaced
    assert sm.capacity(1) == 6 and sm.aborted_stale == 2


def test_buffer_takes_oldest_first_and_drops_stale():
    buf = GroupBuffer()
    for gid, v in [(5, 2), (1, 0), (3, 1), (2, 1)]:
        buf.put(G(gid, v))
    assert [g.group_id for g in buf.drop_stale(1)] == [1]
    assert [g.group_id for g in buf.take(2)] == [2, 3]
    assert buf.take(2) is None and len(buf) == 1
