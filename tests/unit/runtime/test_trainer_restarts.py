"""The decisions of a trainer restart (rlkit.runtime.trainer_restarts), without Ray: which deaths
restart and how often, the save in flight of the dead group, and the error's name of what died.
The restart itself runs in tests/integration/test_resume.py."""

from __future__ import annotations

from types import SimpleNamespace

from rlkit.config.loader import config_from_dict
from rlkit.runtime.trainer_restarts import (
    RankGroupLost,
    dead_actor_name,
    finish_pending_save,
    may_restart,
)


def cfg(**trainer):
    return config_from_dict({"model": {"kind": "tiny"}, "trainer": trainer})


def lost(what: str) -> RankGroupLost:
    return RankGroupLost(f"{what} died at step 3; ...", what)


def test_only_trainer_and_critic_deaths_restart_and_at_most_max_restarts_times():
    assert not may_restart(cfg(), lost("a trainer rank"), 0)  # default 0: stop as before
    two = cfg(max_restarts=2)
    assert may_restart(two, lost("a trainer rank"), 0)
    assert may_restart(two, lost("a critic rank"), 1)
    assert not may_restart(two, lost("a trainer rank"), 2)
    assert not may_restart(two, lost("a process of the run"), 0)
    assert not may_restart(cfg(max_restarts=2, weight_sync="nccl"), lost("a trainer rank"), 0)


def test_the_dead_groups_save_in_flight_is_waited_for_and_its_failure_kept_quiet():
    class Pending:
        def __init__(self, error=None):
            self.error, self.waited = error, False

        def wait(self):
            self.waited = True
            if self.error:
                raise self.error

    for pending in (Pending(), Pending(RuntimeError("rank 1 died before writing"))):
        spine = SimpleNamespace(recorder=SimpleNamespace(pending=pending))
        finish_pending_save(spine)
        assert pending.waited and spine.recorder.pending is None


def test_what_died_is_named_from_the_actor_class_in_the_error():
    assert dead_actor_name(RuntimeError("The actor TrainerRank died")) == "a trainer rank"
    assert dead_actor_name(RuntimeError("CriticRank is dead")) == "a critic rank"
    assert dead_actor_name(RuntimeError("RolloutWorker")) == "a process of the run"
    assert lost("a trainer rank").what == "a trainer rank"
