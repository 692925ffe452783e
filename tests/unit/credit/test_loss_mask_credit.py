"""The loss mask in the credit stages: a completion's `loss_mask` becomes the batch mask, and the
KL in the reward, GAE (advantages, returns, the critic update) and the critic statistics leave
environment tokens out; GAE over a masked response equals GAE over its model tokens alone."""

from __future__ import annotations

import pytest
import torch

from rlkit.algos import gae_returns
from rlkit.algos.kl import kl_token_penalties
from rlkit.config.loader import config_from_dict
from rlkit.credit import Services, build_pipeline
from rlkit.credit.pipeline import new_batch
from rlkit.engines.rollout_protocol import Completion
from rlkit.engines.train_batch import TrainSample
from rlkit.runtime.controller.groups import Group, Prompt, Sample

# sample 0: model, model, env, env, model; sample 1: three model tokens (no mask)
MASKS = [[1, 1, 0, 0, 1], None]
LENGTHS = [5, 3]


def _group(rewards=(1.0, 0.0)) -> Group:
    g = Group(0, Prompt(0, "q", [1, 2], {}), 2, 0, 0)
    for j, (r, n, m) in enumerate(zip(rewards, LENGTHS, MASKS)):
        lp = [-1.0 if m is None or m[t] else 0.0 for t in range(n)]
        g.samples[j] = Sample(j, Completion([5] * n, lp, loss_mask=m), 0, reward=r)
    return g


def _cfg(**algo):
    extra = algo.pop("critic", {})
    return config_from_dict({"model": {"kind": "tiny"}, "algo": algo, "critic": extra})


def test_the_batch_mask_is_the_completions_loss_mask():
    batch = new_batch([_group()])
    assert batch.mask.tolist() == [[1, 1, 0, 0, 1], [1, 1, 1, 0, 0]]
    assert batch.samples[0].loss_mask == [1, 1, 0, 0, 1]
    assert batch.samples[1].loss_mask is None
    assert [s.num_trained for s in batch.samples] == [3, 3]


def test_kl_in_the_reward_is_zero_on_environment_tokens():
    s = TrainSample([1], [2, 3, 4], [-1.0, 0.0, -2.0], loss_mask=[1, 0, 1])
    s.streams["ref_logprobs"] = [-1.5, -7.0, -1.0]
    pens = kl_token_penalties([s], "k1", 0.5)[0]
    assert pens == pytest.approx([0.25, 0.0, -0.5])


def test_outcome_estimators_see_the_kl_of_model_tokens_only():
    class Ref:
        def logprobs(self, samples):
            return [[-1.5] * len(s.response_ids) for s in samples]

    cfg = _cfg(kl_beta=0.5, kl_kind="k1", kl_in_reward=True, advantage="dr_grpo")
    batch = build_pipeline(cfg, Services(reference=Ref()))([_group()])
    # k1 = log mu - log ref = 0.5 on every model token, 0 on the two environment tokens
    assert batch.token_penalties[0].tolist() == pytest.approx([0.25, 0.25, 0.0, 0.0, 0.25])
    assert batch.stats["kl/reward_penalty"] == pytest.approx((0.75 + 0.75) / 2)
    shaped = torch.tensor([1.0 - 0.75, 0.0 - 0.75])  # equal penalties: dr_grpo = R - mean R
    assert batch.samples[0].streams["advantages"] == pytest.approx(float(shaped[0] - shaped.mean()))


def _compact(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        row = x[i][keep[i]]
        out[i, : row.numel()] = row
    return out


def _spread(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(keep.shape, dtype=x.dtype)
    for i in range(keep.shape[0]):
        n = int(keep[i].sum())
        out[i][keep[i]] = x[i, :n]
    return out


def test_gae_over_a_masked_response_is_gae_over_its_model_tokens():
    """Environment positions are skipped by the recursion (the next value is the next model
    token's), so GAE equals GAE on the compacted model tokens, spread back; 0 on environment
    positions."""
    torch.manual_seed(0)
    keep = torch.tensor([[1, 1, 0, 0, 1, 1, 0], [1, 0, 1, 1, 1, 0, 0]], dtype=torch.bool)
    values = torch.randn(2, 7)
    rewards = torch.tensor([1.0, -0.5])
    adv, ret = gae_returns(rewards, values, keep, gamma=0.9, lam=0.8)
    small = _compact(keep.float(), keep).bool()
    adv2, ret2 = gae_returns(rewards, _compact(values, keep), small, gamma=0.9, lam=0.8)
    assert torch.allclose(adv, _spread(adv2, keep), atol=1e-6)
    assert torch.allclose(ret, _spread(ret2, keep), atol=1e-6)
    assert torch.all(adv[~keep] == 0) and torch.all(ret[~keep] == 0)


class FakeCritic:
    def __init__(self):
        self.started = None

    def values(self, samples):
        return [[[0.1 * (t + 1) for t in range(len(s.response_ids))] for s in samples]]

    def train_async(self, samples, returns, old, sizes):
        self.started = returns
        return []


def test_ppo_credit_gives_environment_tokens_no_advantage_return_or_value_statistics():
    critic = FakeCritic()
    cfg = _cfg(advantage="gae", critic={"enabled": True, "gamma": 1.0, "lam": 1.0})
    batch = build_pipeline(cfg, Services(critic=critic))([_group()])
    adv = batch.samples[0].streams["advantages"]
    assert adv[2] == adv[3] == 0.0 and adv[0] != 0.0
    # γ = λ = 1: the return of every model token is the reward, environment tokens 0
    assert critic.started[0] == pytest.approx([1.0, 1.0, 0.0, 0.0, 1.0])
    # the value mean over model tokens only: 0.1, 0.2, 0.5 and 0.1, 0.2, 0.3
    assert batch.stats["critic/value_mean"] == pytest.approx((0.8 + 0.6) / 6)
