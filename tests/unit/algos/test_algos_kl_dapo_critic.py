"""KL estimators, DAPO dynamic sampling, value loss, critic shares, entropy and masked ops."""

import math

import pytest
import torch

from rlkit.algos import (
    disjoint_shares,
    dynamic_sampling_filter,
    entropy_from_logits,
    kl_penalty,
    masked_mean,
    masked_var,
    masked_whiten,
    value_loss,
)

D = torch.float64


def test_kl_hand_values():
    lp = torch.tensor([[math.log(0.5), math.log(0.2)]], dtype=D)
    ref = torch.tensor([[math.log(0.25), math.log(0.4)]], dtype=D)
    d = [math.log(2.0), math.log(0.5)]
    assert torch.allclose(kl_penalty("k1", lp, ref), torch.tensor([d], dtype=D))
    assert torch.allclose(kl_penalty("kl", lp, ref), torch.tensor([d], dtype=D))
    assert torch.allclose(
        kl_penalty("k2", lp, ref), torch.tensor([[x * x / 2 for x in d]], dtype=D)
    )
    assert torch.allclose(kl_penalty("abs", lp, ref), torch.tensor([[abs(x) for x in d]], dtype=D))
    # k3 = ref/pi - log(ref/pi) - 1: ratios 0.5 and 2
    k3 = [0.5 - math.log(0.5) - 1, 2 - math.log(2) - 1]
    for kind in ("k3", "low_var_kl"):
        assert torch.allclose(kl_penalty(kind, lp, ref), torch.tensor([k3], dtype=D))


def test_k3_clamped():
    lp = torch.tensor([[0.0, -30.0]], dtype=D)
    ref = torch.tensor([[-30.0, 0.0]], dtype=D)
    out = kl_penalty("k3", lp, ref)
    assert out[0, 1].item() == 10.0 and 0 < out[0, 0].item() < 30


def test_k1_k3_unbiased_in_expectation():
    """E_{x~pi}[k1] = E_{x~pi}[k3] = KL(pi||ref) exactly, computed with the probabilities."""
    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(7, generator=gen, dtype=D), 0)
    q = torch.softmax(torch.randn(7, generator=gen, dtype=D), 0)
    kl = (p * (p.log() - q.log())).sum()
    for kind in ("k1", "k3"):
        est = (p * kl_penalty(kind, p.log(), q.log())).sum()
        assert est.item() == pytest.approx(kl.item(), abs=1e-12)
    assert (kl_penalty("k3", p.log(), q.log()) >= 0).all()


def test_kl_gradcheck_and_unknown():
    x = torch.randn(2, 3, dtype=D, requires_grad=True)
    y = torch.randn(2, 3, dtype=D)
    for kind in ("k1", "k2", "k3"):
        assert torch.autograd.gradcheck(lambda a, k=kind: kl_penalty(k, a, y), (x,))
    with pytest.raises(ValueError, match="low_var_kl"):
        kl_penalty("k4", x, y)


def test_dynamic_sampling_filter():
    r = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.0])
    ids = [0, 0, 1, 1, 2, 3, 3, 2]  # groups 0 and 1 and 3 all-equal, group 2 mixed
    keep, dropped = dynamic_sampling_filter(r, ids)
    assert keep.tolist() == [False, False, False, False, True, False, False, True]
    assert dropped == 3


def test_value_loss_hand_values():
    v = torch.tensor([[1.0, 0.0, 5.0]], dtype=D, requires_grad=True)
    old = torch.tensor([[0.5, 0.0, 0.0]], dtype=D)
    ret = torch.tensor([[2.0, 1.0, 0.0]], dtype=D)
    m = torch.tensor([[1, 1, 0]])
    loss, met = value_loss(v, old, ret, m, clip_eps=0.2)
    # token 0: unclipped (1-2)^2=1, clipped 0.7 -> (0.7-2)^2=1.69 -> max 1.69; token 1: 1
    assert loss.item() == pytest.approx(0.5 * (1.69 + 1.0) / 2)
    assert met["vf/clip_frac"] == pytest.approx(0.5)
    (g,) = torch.autograd.grad(loss, v)
    assert torch.allclose(g, torch.tensor([[0.0, 0.5 * 2 * (0 - 1) / 2, 0.0]], dtype=D))
    loss, _ = value_loss(v, old, ret, m, clip_eps=None)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 1.0) / 2)


def test_disjoint_shares_split_every_group():
    assert disjoint_shares([4, 4], 2) == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert disjoint_shares([3], 1) == [[0, 1, 2]]


def test_entropy_from_logits():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 11, generator=gen, dtype=D)
    p = torch.softmax(z, -1)
    assert torch.allclose(entropy_from_logits(z), -(p * p.log()).sum(-1), atol=1e-12)
    assert entropy_from_logits(torch.tensor([[0.0, 0.0, 0.0, 0.0]])).item() == pytest.approx(
        math.log(4)
    )
    big = torch.tensor([[1e4, 0.0, -1e4]], dtype=torch.float32)  # softmax underflows to 0
    assert torch.isfinite(entropy_from_logits(big)).all()
    assert entropy_from_logits(big).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.autograd.gradcheck(entropy_from_logits, (z[:1, :2].clone().requires_grad_(True),))


def test_masked_ops():
    x = torch.tensor([[1.0, 2.0, float("nan")], [3.0, float("inf"), 6.0]], dtype=D)
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    vals = [1.0, 2.0, 3.0, 6.0]
    mu = sum(vals) / 4
    var = sum((v - mu) ** 2 for v in vals) / 3
    assert masked_mean(x, m).item() == pytest.approx(mu)
    assert masked_var(x, m).item() == pytest.approx(var)
    assert masked_var(x, m, unbiased=False).item() == pytest.approx(var * 3 / 4)
    w = masked_whiten(x, m)
    assert w[m.bool()].tolist() == pytest.approx([(v - mu) / math.sqrt(var + 1e-8) for v in vals])
    assert torch.equal(w[~m.bool()], torch.zeros(2, dtype=D))
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0
    assert torch.allclose(masked_mean(x, m, dim=-1), torch.tensor([1.5, 4.5], dtype=D))
