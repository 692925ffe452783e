"""The trainer's loss as configured terms: each term's effect is visible, the default list comes
from the recipe (entropy_coef included), weights and masks reach the loss, custom code loads by
path, and the LR schedules have the shapes users expect."""

from __future__ import annotations

import math

import pytest
import torch

from rlkit.algos.loss_terms import LossContext, LossTerm, terms_for, total_loss
from rlkit.config.loader import config_from_dict


def _ctx(**streams) -> LossContext:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, requires_grad=True)
    targets = torch.tensor([[1, 2, 3], [4, 0, 1]])
    logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    batch = {
        "response_mask": mask,
        "behavior_logprobs": logp.detach(),
        "advantages": torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, -1.0]]),
        "ref_logprobs": logp.detach() - 0.5,
        **streams,
    }
    norms = {"num_tokens": 5.0, "num_seqs": 2.0, "max_len": 3.0}
    return LossContext(batch, logp, logits, "token-mean", norms)


def _algo(**kw):
    return config_from_dict({"model": {"kind": "tiny"}, "algo": kw}).algo


def test_default_terms_follow_the_recipe_keys():
    assert [t.name for t in terms_for(_algo())] == ["policy"]
    terms = terms_for(_algo(kl_beta=0.1, entropy_coef=0.01, policy_loss="cispo"))
    assert [(t.name, t.weight) for t in terms] == [("policy", 1.0), ("kl", 0.1), ("entropy", 0.01)]
    assert terms[0].kwargs["loss"] == "cispo"
    assert [t.name for t in terms_for(_algo(kl_beta=0.1, kl_in_reward=True))] == ["policy"]
    custom = terms_for(_algo(loss_terms=[{"term": "entropy", "weight": 2.0}]))
    assert custom == [LossTerm("entropy", 2.0, {})]


def test_entropy_coef_changes_the_loss_by_minus_coef_times_entropy():
    """The bug of the last round: entropy_coef never reached the loss."""
    ctx = _ctx()
    base, m0 = total_loss(terms_for(_algo()), ctx)
    with_bonus, m1 = total_loss(terms_for(_algo(entropy_coef=0.5)), _ctx())
    ent = m1["entropy/mean"]
    assert ent > 0 and m0["entropy/mean"] == pytest.approx(ent)
    assert float(with_bonus.detach()) == pytest.approx(float(base.detach()) - 0.5 * ent, rel=1e-5)
    # and its gradient reaches the logits
    ctx2 = _ctx()
    loss, _ = total_loss([LossTerm("entropy", 1.0)], ctx2)
    loss.backward()
    assert ctx2.logits.grad is not None and ctx2.logits.grad.abs().sum() > 0


def test_kl_term_is_weighted_and_reported():
    loss, m = total_loss([LossTerm("kl", 0.2, {"kind": "k1"})], _ctx())
    assert m["kl/mean/share"] == pytest.approx(0.5)  # k1 = log π - log π_ref = 0.5 everywhere
    assert float(loss) == pytest.approx(0.1)


def test_advantage_weights_and_masks_reach_the_policy_term():
    plain, _ = total_loss([LossTerm("policy")], _ctx())
    zero, _ = total_loss([LossTerm("policy")], _ctx(adv_mask=torch.zeros(2, 3)))
    doubled, _ = total_loss([LossTerm("policy")], _ctx(adv_weight=torch.full((2, 3), 2.0)))
    g = {}
    for name, streams in {"plain": {}, "gamma": {"adv_weight": torch.full((2, 3), 1.5)}}.items():
        c = _ctx(**streams)
        total_loss([LossTerm("policy")], c)[0].backward()
        g[name] = c.logits.grad.clone()
    assert float(zero) == 0.0
    assert float(doubled) == pytest.approx(2 * float(plain))
    assert torch.allclose(g["gamma"], 1.5 * g["plain"], atol=1e-7)


def test_entropy_mask_restricts_the_bonus():
    full, m = total_loss([LossTerm("entropy")], _ctx())
    only_first = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    part, _ = total_loss([LossTerm("entropy")], _ctx(entropy_mask=only_first))
    assert float(part) != pytest.approx(float(full))
    assert -float(part) * 5 == pytest.approx(float(_ctx().entropy(False)[0, 0]), rel=1e-5)


def test_custom_loss_term_and_estimator_by_path(tmp_path):
    from rlkit.algos import compute_advantages

    f = tmp_path / "my_algo.py"
    f.write_text(
        "import torch\n"
        "def twice_grpo(*, rewards, group_ids, **_):\n"
        "    return 2 * (rewards - rewards.mean())\n"
        "def l2(ctx, *, scale=1.0):\n"
        "    return scale * (ctx.logprobs ** 2 * ctx.mask).sum(), {'l2/x': 1.0}\n"
    )
    adv = compute_advantages(f"{f}:twice_grpo", rewards=torch.tensor([1.0, 0.0]), group_ids=[0, 0])
    assert adv.tolist() == [1.0, -1.0]
    loss, m = total_loss([LossTerm(f"{f}:l2", 1.0, {"scale": 2.0})], _ctx())
    ctx = _ctx()
    assert float(loss) == pytest.approx(2 * float((ctx.logprobs**2 * ctx.mask).sum()))
    assert m["l2/x"] == 1.0 and "term/l2/share" in m
    with pytest.raises(ValueError, match="advantage estimator .*nope.py"):
        compute_advantages(f"{tmp_path}/nope.py:f", rewards=torch.tensor([1.0]), group_ids=[0])


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine"])
def test_lr_schedules(kind):
    from rlkit.engines.lr_schedule import lr_factor

    f = [lr_factor(u, kind=kind, warmup=2, total=10, min_ratio=0.1) for u in range(10)]
    assert f[:2] == [0.5, 1.0]  # linear warmup
    if kind == "constant":
        assert f[2:] == [1.0] * 8
    else:
        assert f[2] == 1.0 and all(a >= b for a, b in zip(f[2:], f[3:]))
        assert f[-1] > 0.1 and lr_factor(10, kind=kind, warmup=2, total=10, min_ratio=0.1) == 0.1
    if kind == "cosine":
        mid = lr_factor(6, kind=kind, warmup=2, total=10, min_ratio=0.0)
        assert mid == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
