"""Policy losses: hand values, loop references (verl / ROLL formulas), gradients, metrics."""

import math

import pytest
import torch

from rlkit.algos import POLICY_LOSSES, aggregate, policy_loss, register_policy_loss

D = torch.float64
VARIANTS = ("ppo", "gspo", "tis", "topr", "cispo", "decoupled_ppo")


def _toks(ratios, advs, old=-1.0):
    old_lp = torch.full((1, len(ratios)), old, dtype=D)
    lp = (old_lp + torch.log(torch.tensor([ratios], dtype=D))).requires_grad_(True)
    return lp, old_lp, torch.tensor([advs], dtype=D), torch.ones(1, len(ratios), dtype=torch.bool)


def _rand(seed, B=5, T=6, spread=0.3):
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=gen, dtype=D) * 3 - 0.1
    lp = (old + spread * torch.randn(B, T, generator=gen, dtype=D)).requires_grad_(True)
    beh = old + spread * torch.randn(B, T, generator=gen, dtype=D)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    adv = torch.randn(B, generator=gen, dtype=D)
    return lp, old, beh, mask, adv


def test_ppo_hand_values_clip_and_dual_clip():
    lp, old, adv, m = _toks([1.5, 0.5, 0.5, 5.0], [1.0, 1.0, -1.0, -1.0])
    loss, met = policy_loss("ppo", logprobs=lp, old_logprobs=old, advantages=adv, mask=m)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 0.8 + 5.0) / 4)
    assert met["pg/clip_frac"] == pytest.approx(0.5)
    assert met["pg/ratio_max"] == pytest.approx(5.0) and met["pg/ratio_min"] == pytest.approx(0.5)
    loss, met = policy_loss(
        "ppo", logprobs=lp, old_logprobs=old, advantages=adv, mask=m, dual_clip_c=3.0
    )
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 0.8 + 3.0) / 4)
    assert met["pg/clip_frac_lower"] == pytest.approx(0.25)
    loss, _ = policy_loss(
        "ppo", logprobs=lp, old_logprobs=old, advantages=adv, mask=m, clip_eps_high=0.28
    )
    assert loss.item() == pytest.approx((-1.28 - 0.5 + 0.8 + 5.0) / 4)


def _ref_ppo_token(lp, old, a, lo, hi, c):
    """verl compute_policy_loss_vanilla for one token, plain scalar ops."""
    r = torch.exp(lp - old)
    l1, l2 = -a * r, -a * torch.clamp(r, 1 - lo, 1 + hi)
    out = torch.maximum(l1, l2)
    if c is not None and a < 0:
        out = torch.minimum(out, -a * c)
    return out


@pytest.mark.parametrize("dual", [None, 3.0])
def test_ppo_matches_loop_with_tis_values_and_grads(dual):
    lp, old, beh, mask, adv = _rand(1, spread=0.4)
    loss, met = policy_loss(
        "ppo",
        logprobs=lp,
        old_logprobs=old,
        advantages=adv,
        mask=mask,
        behavior_logprobs=beh,
        clip_eps_high=0.28,
        dual_clip_c=dual,
    )
    terms, ws = [], []
    for b in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if mask[b, t]:
                w = min(math.exp(old[b, t].item() - beh[b, t].item()), 2.0)
                ws.append(w)
                terms.append(w * _ref_ppo_token(lp[b, t], old[b, t], adv[b], 0.2, 0.28, dual))
    ref = torch.stack(terms).sum() / len(terms)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-10)
    (g,) = torch.autograd.grad(loss, lp)
    (g_ref,) = torch.autograd.grad(ref, lp)
    assert torch.allclose(g, g_ref, atol=1e-10)
    assert met["pg/is_weight_mean"] == pytest.approx(sum(ws) / len(ws))
    # behavior_correction="none" ignores behaviour log-probs
    a, _ = policy_loss(
        "ppo",
        logprobs=lp,
        old_logprobs=old,
        advantages=adv,
        mask=mask,
        behavior_logprobs=beh,
        behavior_correction="none",
    )
    b, _ = policy_loss("ppo", logprobs=lp, old_logprobs=old, advantages=adv, mask=mask)
    assert a.item() == b.item()


def test_ppo_gradcheck():
    lp, old, beh, mask, adv = _rand(2, B=3, T=4)
    for kw in ({}, {"behavior_logprobs": beh, "dual_clip_c": 3.0}):
        f = lambda x, kw=kw: policy_loss(
            "ppo", logprobs=x, old_logprobs=old, advantages=adv, mask=mask, **kw
        )[0]
        assert torch.autograd.gradcheck(f, (lp.detach().clone().requires_grad_(True),))


def test_gspo_equals_sequence_level_objective():
    """GSPO-token with seq-mean-token-mean == the paper's sequence objective, value and grad."""
    lp, old, _, mask, adv = _rand(3, B=6, T=5, spread=0.05)
    for lo, hi in ((3e-4, 4e-4), (0.01, 0.02)):
        loss, met = policy_loss(
            "gspo",
            logprobs=lp,
            old_logprobs=old,
            advantages=adv,
            mask=mask,
            agg="seq-mean-token-mean",
            clip_eps_low=lo,
            clip_eps_high=hi,
        )
        per_seq = []
        for b in range(6):
            n = int(mask[b].sum())
            s = torch.exp((lp[b, :n] - old[b, :n]).sum() / n)
            per_seq.append(-torch.minimum(s * adv[b], torch.clamp(s, 1 - lo, 1 + hi) * adv[b]))
        ref = torch.stack(per_seq).mean()
        assert loss.item() == pytest.approx(ref.item(), abs=1e-12)
        (g,) = torch.autograd.grad(loss, lp)
        (g_ref,) = torch.autograd.grad(ref, lp)
        assert torch.allclose(g, g_ref, atol=1e-12)
    assert 0.0 <= met["pg/clip_frac"] <= 1.0


def test_tis_hand_values_and_gradient():
    lp, old, adv, m = _toks([1.0, 1.0], [1.0, -2.0], old=math.log(0.5))
    beh = torch.log(torch.tensor([[0.1, 0.4]], dtype=D))  # pi/mu = 5 -> 2 (capped), 1.25
    loss, met = policy_loss(
        "tis", logprobs=lp, old_logprobs=old, advantages=adv, mask=m, behavior_logprobs=beh
    )
    exp = (-2.0 * 1.0 * math.log(0.5) - 1.25 * -2.0 * math.log(0.5)) / 2
    assert loss.item() == pytest.approx(exp)
    (g,) = torch.autograd.grad(loss, lp)  # weight is detached: d/dlp = -w A / N
    assert torch.allclose(g, torch.tensor([[-2.0 / 2, 2.5 / 2]], dtype=D))
    assert met["pg/is_weight_mean"] == pytest.approx(1.625)
    assert met["pg/clip_frac"] == pytest.approx(0.5)
    # falls back to old_logprobs: ratio 1 -> plain REINFORCE
    loss, _ = policy_loss("tis", logprobs=lp, old_logprobs=old, advantages=adv, mask=m)
    assert loss.item() == pytest.approx((-math.log(0.5) + 2 * math.log(0.5)) / 2)


def test_topr_hand_values():
    lp = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=D)).requires_grad_(True)
    old = torch.log(torch.tensor([[0.25, 1.0], [0.25, 1.0]], dtype=D))  # r = 2, 0.5
    adv = torch.tensor([1.0, -1.0], dtype=D)
    m = torch.ones(2, 2, dtype=torch.bool)
    loss, met = policy_loss(
        "topr",
        logprobs=lp,
        old_logprobs=old,
        advantages=adv,
        mask=m,
        rewards=torch.tensor([1.0, 0.0]),
        agg="seq-mean-token-sum",
    )
    L = math.log(0.5)
    seq0 = -1.0 * L * 2  # positive sample: no IS weight
    seq1 = -(1.0 * -1.0 * L) - (0.5 * -1.0 * L)  # negative: clip(r, 0, 1) = 1, 0.5
    assert loss.item() == pytest.approx((seq0 + seq1) / 2)
    (g,) = torch.autograd.grad(loss, lp)
    assert torch.allclose(g, torch.tensor([[-0.5, -0.5], [0.5, 0.25]], dtype=D))
    assert met["pg/positive_frac"] == pytest.approx(0.5)


def test_cispo_hand_values_and_gradient_through_every_token():
    lp, old, adv, m = _toks([1.5, 0.5, 1.05], [1.0, 1.0, 1.0])
    loss, met = policy_loss("cispo", logprobs=lp, old_logprobs=old, advantages=adv, mask=m)
    w = torch.tensor([[1.1, 0.9, 1.05]], dtype=D)
    assert loss.item() == pytest.approx(float(-(w * lp.detach()).sum() / 3))
    (g,) = torch.autograd.grad(loss, lp)
    assert torch.allclose(g, -w / 3)  # clipped tokens still get a gradient (unlike PPO)
    assert met["pg/clip_frac"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("level", ["token", "geometric", "sequence"])
@pytest.mark.parametrize("rmask", [None, (0.8, 1.2)])
def test_decoupled_ppo_matches_loop(level, rmask):
    lp, prox, beh, mask, adv = _rand(4, B=6, T=5, spread=0.15)
    loss, met = policy_loss(
        "decoupled_ppo",
        logprobs=lp,
        old_logprobs=prox,
        advantages=adv,
        mask=mask,
        behavior_logprobs=beh,
        is_level=level,
        ratio_mask=rmask,
    )
    terms, dropped, total = [], 0, 0
    for b in range(6):
        idx = [t for t in range(5) if mask[b, t]]
        diffs = [prox[b, t].item() - beh[b, t].item() for t in idx]
        for k, t in enumerate(idx):
            total += 1
            if level == "token":
                raw = math.exp(diffs[k])
            elif level == "geometric":
                raw = math.exp(sum(diffs) / len(diffs))
            else:
                raw = math.exp(sum(diffs))
            if rmask is not None and not (rmask[0] <= raw <= rmask[1]):
                dropped += 1
                continue
            terms.append(
                min(raw, 1.2) * _ref_ppo_token(lp[b, t], prox[b, t], adv[b], 0.2, 0.2, None)
            )
    ref = torch.stack(terms).sum() / len(terms)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-10)
    (g,) = torch.autograd.grad(loss, lp)
    (g_ref,) = torch.autograd.grad(ref, lp)
    assert torch.allclose(g, g_ref, atol=1e-10)
    assert met["pg/masked_frac"] == pytest.approx(dropped / total)
    if rmask is not None and level == "sequence":
        assert dropped > 0  # the test exercises masking


def test_decoupled_ppo_gradcheck_and_no_behavior_equals_ppo():
    lp, prox, beh, mask, adv = _rand(5, B=3, T=4)
    f = lambda x: policy_loss(
        "decoupled_ppo",
        logprobs=x,
        old_logprobs=prox,
        advantages=adv,
        mask=mask,
        behavior_logprobs=beh,
        is_level="geometric",
    )[0]
    assert torch.autograd.gradcheck(f, (lp.detach().clone().requires_grad_(True),))
    a, _ = policy_loss("decoupled_ppo", logprobs=lp, old_logprobs=prox, advantages=adv, mask=mask)
    b, _ = policy_loss("ppo", logprobs=lp, old_logprobs=prox, advantages=adv, mask=mask)
    assert a.item() == b.item()


@pytest.mark.parametrize("variant", VARIANTS)
def test_metrics_and_padding_garbage(variant):
    lp, old, beh, mask, adv = _rand(6)
    bad = torch.where(mask, lp, torch.full_like(lp, -float("inf")))
    old_bad = torch.where(mask, old, torch.full_like(old, float("nan")))
    loss, met = policy_loss(
        variant,
        logprobs=bad,
        old_logprobs=old_bad,
        advantages=adv,
        mask=mask,
        behavior_logprobs=beh,
    )
    (g,) = torch.autograd.grad(loss, lp)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    assert torch.all(g[~mask] == 0)
    for key in (
        "pg/clip_frac",
        "pg/ratio_mean",
        "pg/ratio_max",
        "pg/ratio_min",
        "pg/loss",
        "pg/is_weight_mean",
    ):
        assert isinstance(met[key], float), key
    assert met["pg/loss"] == pytest.approx(loss.item())
    assert met["pg/ratio_min"] <= met["pg/ratio_mean"] <= met["pg/ratio_max"]
    if variant == "decoupled_ppo":
        assert "pg/masked_frac" in met


def test_token_level_advantages_and_registry():
    lp, old, _, mask, adv = _rand(7)
    a1, _ = policy_loss("ppo", logprobs=lp, old_logprobs=old, advantages=adv, mask=mask)
    a2, _ = policy_loss(
        "ppo",
        logprobs=lp,
        old_logprobs=old,
        mask=mask,
        advantages=adv.unsqueeze(-1).expand(-1, lp.shape[1]),
    )
    assert a1.item() == a2.item()
    with pytest.raises(KeyError, match="ppo"):
        policy_loss("ppo2", logprobs=lp, old_logprobs=old, advantages=adv, mask=mask)
    with pytest.raises(TypeError):  # unknown knob is not silently ignored
        policy_loss("ppo", logprobs=lp, old_logprobs=old, advantages=adv, mask=mask, clip=0.1)

    @register_policy_loss("_test_vanilla_pg")
    def _vanilla(*, logprobs, old_logprobs, advantages, mask, behavior_logprobs=None):
        return -advantages * logprobs, mask, {}

    try:
        loss, met = policy_loss(
            "_test_vanilla_pg", logprobs=lp, old_logprobs=old, advantages=adv, mask=mask
        )
        ref = aggregate(-adv.unsqueeze(-1) * lp, mask, "token-mean")
        assert loss.item() == pytest.approx(ref.item()) and "pg/loss" in met
        with pytest.raises(ValueError, match="already registered"):
            register_policy_loss("_test_vanilla_pg")(_vanilla)
    finally:
        POLICY_LOSSES.pop("_test_vanilla_pg")


def test_ppo_tis_weight_hand_values():
    lp, old, adv, m = _toks([1.0, 1.0], [1.0, 1.0])  # r = 1: loss per token = -A = -1
    beh = old - torch.log(torch.tensor([[5.0, 0.5]], dtype=D))  # pi_old/mu = 5 -> 2, 0.5
    loss, met = policy_loss(
        "ppo", logprobs=lp, old_logprobs=old, advantages=adv, mask=m, behavior_logprobs=beh
    )
    assert loss.item() == pytest.approx((-2.0 - 0.5) / 2)
    assert met["pg/is_weight_mean"] == pytest.approx(1.25)
    assert met["pg/is_clip_frac"] == pytest.approx(0.5)
    loss, _ = policy_loss(
        "ppo", logprobs=lp, old_logprobs=old, advantages=adv, mask=m, behavior_logprobs=old
    )  # mu == pi_old: exactly on-policy
    assert loss.item() == -1.0
