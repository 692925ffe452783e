"""KL in the reward: token penalties β·k3 and the shaped outcome advantages, by hand."""

from __future__ import annotations

import math

import pytest

from rlkit.algos.kl import kl_token_penalties
from rlkit.config.loader import config_from_dict
from rlkit.credit import Services, build_pipeline
from rlkit.engines.rollout_protocol import Completion
from rlkit.engines.train_batch import TrainSample
from rlkit.runtime.controller.groups import Group, Prompt, Sample


def _k3(lp: float, ref: float) -> float:
    return math.exp(ref - lp) - (ref - lp) - 1


def test_penalties_are_beta_k3_per_token():
    s = TrainSample([1], [2, 3], [-1.0, -2.0], 0.0, streams={"ref_logprobs": [-1.5, -1.0]})
    (pen,) = kl_token_penalties([s], "k3", 0.1)
    assert pen == pytest.approx([0.1 * _k3(-1.0, -1.5), 0.1 * _k3(-2.0, -1.0)])


class _Reference:
    """Stands in for the reference model: log π_ref = log μ + (0, -1) per sample."""

    def logprobs(self, samples):
        return [[lp + (0.0 if i == 0 else -1.0) for lp in s.behavior_logprobs]
                for i, s in enumerate(samples)]  # fmt: skip


def test_outcome_advantages_use_reward_minus_kl_sum():
    cfg = config_from_dict(
        {
            "model": {"kind": "tiny"},
            "algo": {"advantage": "dr_grpo", "kl_beta": 0.5, "kl_kind": "k1", "kl_in_reward": True},
        }
    )
    group = Group(0, Prompt(0, "q", [1], {}), 2, 0, 0)
    for j in range(2):
        group.samples[j] = Sample(j, Completion([2], [-1.0]), 0, reward=1.0)
    pipe = build_pipeline(cfg, Services(reference=_Reference()))
    assert pipe.names == ["reference", "kl_in_reward", "advantage"]
    batch = pipe([group])
    # k1 = log μ - log π_ref = 0 and 1 -> penalties 0 and 0.5 -> shaped rewards 1.0 and 0.5
    # -> Dr.GRPO advantages +0.25 / -0.25
    assert [s.streams["advantages"] for s in batch.samples] == pytest.approx([0.25, -0.25])
    assert batch.stats["kl/reward_penalty"] == pytest.approx(0.25)
