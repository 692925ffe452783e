"""The worked examples of docs/extending.md, each loaded by path exactly as a recipe names it."""

from __future__ import annotations

import pytest
import torch

from rlkit.algos import compute_advantages, policy_loss
from rlkit.algos.loss_terms import make_token_hook
from rlkit.config.loader import config_from_dict
from rlkit.credit import Services, build_pipeline
from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.runtime.controller.groups import Group, Prompt, Sample
from rlkit.runtime.controller.strategies import make_strategy

EX = "docs/examples"


def test_rank_advantage_by_path():
    adv = compute_advantages(
        f"{EX}/custom_algo.py:rank_advantage",
        rewards=torch.tensor([3.0, 1.0, 2.0, 5.0, 5.0]),
        group_ids=[0, 0, 0, 1, 1],
    )
    assert adv.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0, 0.0])


def test_clipped_reinforce_by_path():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, m = policy_loss(
        f"{EX}/custom_algo.py:clipped_reinforce",
        logprobs=logp,
        old_logprobs=torch.tensor([[-1.0, -2.0]]),
        advantages=torch.tensor([1.0]),
        mask=torch.tensor([[1.0, 1.0]]),
        cap=1.5,
    )
    assert float(loss.detach()) == pytest.approx(1.5)  # -(1·1·(-1) + 1·1·(-2)) / 2
    assert m["reinforce/ratio_mean"] == 1.0


def test_late_token_hook_by_path():
    hook = make_token_hook(f"{EX}/custom_hook.py:LateTokenWeights", {"slope": 1.0})
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]])
    w = hook.streams({"response_mask": mask})["adv_weight"]
    assert w.tolist()[0] == pytest.approx([0.0, 1.0, 4 / 3, 5 / 3, 0.0])
    assert hook.metrics()["hook/weight_mean"] == pytest.approx(4 / 3)


def test_greedy_first_strategy_by_path():
    strategy = make_strategy(f"{EX}/custom_strategy.py:GreedyFirst", SamplingConfig(), 0, {})
    reqs = strategy.requests(Group(0, Prompt(0, "q", [1], {}), 3, 0, 0))
    assert [r.sampling.temperature for r in reqs] == [0.0, 1.0, 1.0]


def test_brevity_stage_by_path():
    cfg = config_from_dict(
        {
            "model": {"kind": "tiny"},
            "algo": {
                "advantage": "dr_grpo",
                "credit": [f"{EX}/custom_stage.py:BrevityBonus"],
                "credit_kw": {f"{EX}/custom_stage.py:BrevityBonus": {"bonus": 1.0}},
            },
        }
    )
    g = Group(0, Prompt(0, "q", [1], {}), 2, 0, 0)
    g.samples[0] = Sample(0, Completion([5] * 2, [-1.0] * 2), 0, reward=0.0)
    g.samples[1] = Sample(1, Completion([5] * 4, [-1.0] * 4), 0, reward=0.0)
    batch = build_pipeline(cfg, Services())([g])
    # bonus 1·(1 − 2/4) = 0.5 for the short one, 0 for the long one -> Dr.GRPO ±0.25
    assert [s.streams["advantages"] for s in batch.samples] == pytest.approx([0.25, -0.25])
    assert batch.stats["brevity/bonus_mean"] == pytest.approx(0.25)


def test_logprob_l2_term_by_path():
    from rlkit.algos.loss_terms import LossContext, LossTerm, total_loss

    logp = torch.tensor([[-1.0, -2.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    ctx = LossContext(
        {"response_mask": mask}, logp, torch.zeros(1, 3, 4), "token-mean", {"num_tokens": 2.0}
    )
    loss, m = total_loss([LossTerm(f"{EX}/custom_term.py:logprob_l2", 0.5, {"scale": 2.0})], ctx)
    assert float(loss.detach()) == pytest.approx(0.5 * 2.0 * (1 + 4) / 2)
    assert m["l2/value"] == pytest.approx(5.0) and m["term/logprob_l2/share"] == 5.0
