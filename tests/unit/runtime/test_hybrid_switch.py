"""The hybrid engine's order of operations (rlkit.runtime.placement.hybrid, GPU colocated
placement), on fakes: the credit stages run with the workers awake, the workers sleep before
the trainer reloads, the trainer offloads before the workers wake, and the new weights are
published only after that.  (The real sleep/offload calls are GPU-only:
tests/integration/test_hybrid_gpu.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import ray

from rlkit.runtime.controller.trainer_dispatch import TrainerDispatch
from rlkit.runtime.placement.hybrid import make_switch


class _Call:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def remote(self, *args):
        self.log.append(self.name)
        return self.name


def _parts(log):
    worker = SimpleNamespace(sleep=_Call(log, "worker.sleep"), wake_up=_Call(log, "worker.wake"))

    class Trainer:
        def offload_states_async(self):
            log.append("trainer.offload")
            return []

        def reload_states_async(self):
            log.append("trainer.reload")
            return []

        def train_step_async(self, samples):
            log.append("trainer.train")
            return [{"loss": 0.0}]

    return [worker, worker], Trainer()


def test_switch_order_around_the_policy_step(monkeypatch):
    monkeypatch.setattr(ray, "get", lambda refs, **_: refs)
    log: list[str] = []
    workers, trainer = _parts(log)
    assert make_switch(workers, trainer, bundles=None) is None  # no hybrid: nothing switches
    switch = make_switch(workers, trainer, bundles="placement-group")
    assert log == []  # nothing moves before the run starts (and resumes)
    switch.to_rollout()
    assert log == ["trainer.offload", "worker.wake", "worker.wake"]  # the workers generate first

    def pipeline(groups):
        log.append("credit")  # reference, critics, engine probes: workers must be awake
        return SimpleNamespace(samples=[], stats={}, extra_refs=[])

    log.clear()
    dispatch = TrainerDispatch(pipeline, trainer, switch)
    metrics = dispatch.submit([], {}).result()
    dispatch.close()
    assert log == [
        "credit",
        "worker.sleep",
        "worker.sleep",
        "trainer.reload",
        "trainer.train",
        "trainer.offload",
        "worker.wake",
        "worker.wake",
    ]  # then Spine.finish_train publishes into the awake workers
    assert metrics["loss"] == 0.0 and switch.switches == 3
