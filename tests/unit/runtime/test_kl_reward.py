"""KL in the reward: token penalties β·k3 and the shaped outcome advantages, by hand."""

from __future__ import annotations

import math

import pytest

from rlkit.engines.train_batch import TrainSample
from rlkit.runtime.kl_reward import apply_to_outcome_advantages, kl_token_penalties


def _k3(lp: float, ref: float) -> float:
    return math.exp(ref - lp) - (ref - lp) - 1


def test_penalties_are_beta_k3_per_token():
    s = TrainSample([1], [2, 3], [-1.0, -2.0], 0.0, ref_logprobs=[-1.5, -1.0])
    (pen,) = kl_token_penalties([s], "k3", 0.1)
    assert pen == pytest.approx([0.1 * _k3(-1.0, -1.5), 0.1 * _k3(-2.0, -1.0)])


def test_outcome_advantages_use_reward_minus_kl_sum():
    samples = [TrainSample([1], [2], [-1.0], 0.0) for _ in range(2)]
    mean_pen = apply_to_outcome_advantages(
        samples, [1.0, 1.0], [0, 0], [[0.5], [0.0]], "dr_grpo", {}
    )
    # shaped rewards 0.5 and 1.0 -> Dr.GRPO advantages -0.25 / +0.25
    assert [s.advantage for s in samples] == pytest.approx([-0.25, 0.25])
    assert mean_pen == pytest.approx(0.25)
