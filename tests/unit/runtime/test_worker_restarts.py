"""Replacing dead rollout workers (fake actors, no Ray cluster): the replacement takes the dead
worker's place with the last published weights and version; the bound gives a clear error."""

from __future__ import annotations

import pytest

from rlkit.runtime.controller.weight_publisher import WeightPublisher
from rlkit.runtime.controller.worker_restarts import (
    RolloutWorkerLost,
    WorkerRestarts,
    is_actor_death,
)


class Call:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def remote(self, *args):
        self.log.append((self.name, args))


class FakeActor:
    def __init__(self, name):
        self.name, self.calls = name, []
        self.load_weights = Call(self.calls, "load_weights")


def make(max_restarts=2):
    pub = WeightPublisher(None, [], "object_store")  # nothing published yet
    workers, made = [FakeActor("w0"), FakeActor("w1")], []

    def start():
        made.append(FakeActor(f"new{len(made)}"))
        return made[-1]

    return WorkerRestarts(workers, pub, start, max_restarts, log=lambda m: None), workers, pub


def test_replacement_takes_the_index_with_the_last_weights_and_version():
    restarts, workers, pub = make()
    new = restarts.replace(1, RuntimeError("gone"))
    assert workers[1] is new and new.calls == []  # version 0: the engine loads the model
    pub.last = ("blob-ref", 7)
    new2 = restarts.replace(0, RuntimeError("gone"))
    assert workers[0] is new2 and new2.calls == [("load_weights", ("blob-ref", 7))]
    assert restarts.count == 2 and restarts.started == [new, new2]


def test_the_bound_stops_the_run_naming_the_worker():
    restarts, workers, _ = make(max_restarts=1)
    restarts.replace(0, RuntimeError("first"))
    with pytest.raises(RolloutWorkerLost) as err:
        restarts.replace(1, RuntimeError("oom-killed"))
    msg = str(err.value)
    assert "rollout worker 1 died" in msg and "oom-killed" in msg
    assert "rollout.max_worker_restarts = 1" in msg
    assert workers[1].name == "w1"  # nothing started past the bound


def test_nccl_weight_sync_does_not_restart():
    restarts, _, pub = make()
    pub.mode = "nccl"
    with pytest.raises(RolloutWorkerLost, match="weight_sync: nccl"):
        restarts.replace(0, RuntimeError("x"))


def test_actor_death_errors_are_recognised():
    import ray.exceptions as rex

    assert is_actor_death(rex.ActorDiedError())
    assert is_actor_death(rex.RayActorError())
    assert not is_actor_death(ValueError("a bug in the worker code"))


def test_an_actor_killed_by_rays_memory_monitor_is_a_death_naming_its_class():
    """Ray's OOM killer: the running call raises OutOfMemoryError (not an actor error); the
    run must stop as RankGroupLost with the resume command, not with Ray's traceback."""
    import ray.exceptions as rex

    from rlkit.runtime.trainer_restarts import dead_actor_name

    exc = rex.OutOfMemoryError("Selected to kill: (Actor(3604de), task name=TrainerRank.__init__")
    assert is_actor_death(exc)
    assert dead_actor_name(exc) == "a trainer rank"
