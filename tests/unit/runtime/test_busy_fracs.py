"""perf/rollout_busy_frac and perf/train_busy_frac: busy intervals, open ones included, over
the step's wall time."""

from __future__ import annotations

import time

import pytest

from rlkit.runtime.step_recorder import BusyClock


def test_busy_clock_counts_closed_and_open_intervals_once():
    clock = BusyClock()
    clock.start("w0")
    time.sleep(0.05)
    clock.stop("w0")
    clock.start("w1")
    time.sleep(0.05)
    first = clock.take()  # w0's 0.05 s + w1's open 0.05 s
    assert first == pytest.approx(0.10, abs=0.03)
    time.sleep(0.02)
    clock.stop("w1")
    assert clock.take() == pytest.approx(0.02, abs=0.015)  # only the part after the last take
    assert clock.take() == 0.0


def test_recorder_fractions():

    from rlkit.runtime.step_recorder import StepRecorder

    rec = StepRecorder.__new__(StepRecorder)
    rec.rollout_clock, rec.num_workers = BusyClock(), 2
    rec.rollout_clock.done_s = 1.0  # two workers, one busy 1 s of a 2 s step
    fr = rec.busy_fracs({"time/train_s": 0.5}, 2.0)
    assert fr == {"perf/rollout_busy_frac": 0.25, "perf/train_busy_frac": 0.25}
