"""The shipped credit stages on hand-made groups and stand-in services: token-level process
rewards, GAE over critic values with the registered `gae` estimator, the critic update."""

from __future__ import annotations

import pytest
import torch

from rlkit.algos import gae_returns, masked_whiten
from rlkit.config.loader import config_from_dict
from rlkit.credit import Services, build_pipeline
from rlkit.engines.rollout_protocol import Completion
from rlkit.runtime.controller.groups import Group, Prompt, Sample


def _group(rewards, lengths, token_scores=None):
    g = Group(0, Prompt(0, "q", [1, 2], {}), len(rewards), 0, 0)
    for j, (r, n) in enumerate(zip(rewards, lengths)):
        ts = None if token_scores is None else token_scores[j]
        g.samples[j] = Sample(j, Completion([5] * n, [-1.0] * n), 0, reward=r, token_scores=ts)
    return g


def _cfg(**algo):
    extra = algo.pop("critic", {})
    return config_from_dict({"model": {"kind": "tiny"}, "algo": algo, "critic": extra})


def test_token_level_takes_the_rewards_token_scores():
    g = _group([1.0, 0.0], [3, 2], token_scores=[[0.1, 0.2, 0.3], None])
    batch = build_pipeline(_cfg(advantage="token_level"), Services())([g])
    assert batch.samples[0].streams["advantages"] == pytest.approx([0.1, 0.2, 0.3])
    assert batch.samples[1].streams["advantages"] == [0.0, 0.0]  # no scores: outcome reward 0


class FakeCritic:
    """Two critics whose values are known; records the update it was asked to start."""

    def __init__(self):
        self.started = None

    def values(self, samples):
        return [
            [[0.5] * len(s.response_ids) for s in samples],
            [[0.1 * (t + 1) for t in range(len(s.response_ids))] for s in samples],
        ]

    def train_async(self, samples, returns, old, sizes):
        self.started = (returns, old, sizes)
        return ["critic-ref"]


def test_gae_with_critics_uses_the_mean_value_and_starts_the_update():
    critic = FakeCritic()
    cfg = _cfg(advantage="gae", critic={"enabled": True, "num_critics": 2, "gamma": 1.0})
    pipe = build_pipeline(cfg, Services(critic=critic))
    assert pipe.names == ["critic_values", "advantage", "critic_update"]
    batch = pipe([_group([1.0, 0.0], [3, 2])])
    mask = batch.mask
    v = torch.tensor([[0.3, 0.35, 0.4], [0.3, 0.35, 0.0]])  # mean of the two critics
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    adv, ret = gae_returns(rewards, v, mask, gamma=1.0, lam=0.95)
    want = masked_whiten(adv, mask)
    assert batch.samples[0].streams["advantages"] == pytest.approx(want[0].tolist(), abs=1e-6)
    assert batch.samples[1].streams["advantages"] == pytest.approx(want[1, :2].tolist(), abs=1e-6)
    returns, old, sizes = critic.started
    assert returns[0] == pytest.approx(ret[0].tolist()) and sizes == [2]
    assert old[1][0] == pytest.approx([0.1, 0.2, 0.3])  # each critic's own old values
    assert batch.extra_refs == ["critic-ref"]
    assert batch.stats["critic/value_mean"] == pytest.approx(float(v[mask].mean()))
