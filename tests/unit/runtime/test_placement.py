"""Placement rules: colocated gives the busy stage every core's thread, disaggregated keeps
the reserved CPUs' threads, auto follows async.mode; the vLLM binding names real CPUs."""

from __future__ import annotations

import os

from rlkit.config.loader import config_from_dict
from rlkit.runtime.placement import threads as placement


def _cfg(**tree):
    return config_from_dict({"model": {"kind": "tiny"}, "ray": {"num_cpus": 8}, **tree})


def test_auto_is_colocated_for_sync_and_disaggregated_for_async():
    assert placement.resolve(_cfg(**{"async": {"mode": "sync"}})) == "colocated"
    assert placement.resolve(_cfg(**{"async": {"mode": "async"}})) == "disaggregated"
    assert placement.resolve(_cfg(placement="colocated")) == "colocated"


def test_thread_rules():
    co = _cfg(placement="colocated", rollout={"num_workers": 2}, trainer={"world_size": 2})
    assert placement.rollout_threads(co) == 4 and placement.trainer_threads(co, 2) == 4
    assert placement.trainer_threads(co, 1) == 8
    dis = _cfg(placement="disaggregated", rollout={"worker_cpus": 3.0}, trainer={"rank_cpus": 0.5})
    assert placement.rollout_threads(dis) == 3 and placement.trainer_threads(dis, 2) == 1


def test_vllm_binding_lists_allowed_cpus():
    allowed = sorted(os.sched_getaffinity(0))
    ids = [int(x) for x in placement.vllm_cpu_binding(len(allowed)).split(",")]
    assert ids == allowed
    assert placement.vllm_cpu_binding(1, worker_index=1) == str(allowed[1 % len(allowed)])


def test_async_disaggregated_trainer_borrows_every_core_while_the_rollout_idles():
    from rlkit.runtime.placement.core_lease import LeaseSignal
    from rlkit.runtime.placement.threads import lends_cores

    asyn = _cfg(**{"async": {"mode": "async"}}, trainer={"rank_cpus": 1.0})
    assert lends_cores(asyn)
    assert placement.trainer_threads(asyn, 2) == 1 and placement.trainer_idle_threads(asyn, 2) == 4
    for cfg in (
        _cfg(**{"async": {"mode": "sync"}}),  # the stages never overlap
        _cfg(**{"async": {"mode": "async"}}, placement="colocated"),  # threads shared already
        _cfg(**{"async": {"mode": "async"}}, ray={"address": "auto"}),  # other nodes' cores
    ):
        assert not lends_cores(cfg)
        assert placement.trainer_idle_threads(cfg, 2) == placement.trainer_threads(cfg, 2)

    sent = []

    class _Remote:
        def remote(self, idle):
            sent.append(idle)

    lease = type("Lease", (), {"set_idle": _Remote()})()
    signal = LeaseSignal(lease)
    for idle in (False, False, True, True, False):
        signal.update(idle)
    assert sent == [False, True, False]  # one message per change
