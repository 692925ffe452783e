"""perf/rollout_busy_frac and perf/train_busy_frac: the rollout workers' own busy seconds (as they
report them) and the train step's, over the step's wall time."""

from __future__ import annotations

import pytest

from rlkit.runtime.controller.step_recorder import WorkerBusy


class BusyWorker:
    """Stands in for a rollout worker's `busy.remote()` (the reading is its own "ref")."""

    def __init__(self, reading: tuple[float, float]):
        self.busy = self
        self.reading = reading

    def remote(self):
        return self.reading


def test_worker_busy_sums_reports_once():
    clock = WorkerBusy(get=lambda ref: ref)
    clock.ask(0, BusyWorker((1.0, 10.0)))
    clock.ask(1, BusyWorker((0.5, 4.0)))
    clock.ask(1, BusyWorker((9.0, 9.0)))  # one report per run call: the first one stands
    clock.collect(0)
    clock.collect(1)
    clock.collect(1)  # nothing asked any more
    assert clock.take() == pytest.approx(1.5) and clock.take() == 0.0
    clock.ask(0, BusyWorker((2.0, 3.0)))
    clock.drop(0)  # the worker died: its report is forgotten
    clock.collect(0)
    assert clock.take() == 0.0


def test_recorder_fractions():
    from rlkit.runtime.controller.step_recorder import StepRecorder

    rec = StepRecorder.__new__(StepRecorder)
    rec.rollout_clock, rec.num_workers = WorkerBusy(), 2
    rec.rollout_clock.done_s = 1.0  # two workers, one busy 1 s of a 2 s step
    fr = rec.busy_fracs({"time/train_s": 0.5}, 2.0)
    assert fr == {"perf/rollout_busy_frac": 0.25, "perf/train_busy_frac": 0.25}
