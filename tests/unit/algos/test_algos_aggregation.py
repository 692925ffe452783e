"""Aggregation modes: hand values, loop references and micro-batch / rank invariance."""

import pytest
import torch

from rlkit.algos import AGG_MODES, aggregate, global_normalizers, policy_loss

D = torch.float64


def _batch(seed, B=7, T=9):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, generator=gen, dtype=D)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    x = torch.where(mask, x, torch.full_like(x, float("nan")))  # garbage in padding
    return x, mask


def test_hand_values():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]], dtype=D)
    m = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(x, m, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate(x, m, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(x, m, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert aggregate(x, m, "seq-mean-token-sum-norm").item() == pytest.approx((6 / 3 + 4 / 3) / 2)
    assert aggregate(x, m, "seq-mean-token-sum-norm", max_len=10).item() == pytest.approx(
        (0.6 + 0.4) / 2
    )


def _ref(x, mask, mode, max_len):
    rows = [[x[b, t].item() for t in range(x.shape[1]) if mask[b, t]] for b in range(x.shape[0])]
    if mode == "token-mean":
        flat = [v for r in rows for v in r]
        return sum(flat) / len(flat)
    if mode == "seq-mean-token-mean":
        return sum(sum(r) / len(r) for r in rows) / len(rows)
    if mode == "seq-mean-token-sum":
        return sum(sum(r) for r in rows) / len(rows)
    return sum(sum(r) / max_len for r in rows) / len(rows)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_matches_loop_reference(mode):
    x, mask = _batch(0)
    got = aggregate(x, mask, mode, max_len=16)
    assert got.item() == pytest.approx(_ref(x, mask, mode, 16), abs=1e-12)
    assert not torch.isnan(got)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_micro_batch_invariance_values_and_grads(mode):
    for seed in range(3):
        x, mask = _batch(seed, B=11, T=8)
        x = torch.where(mask, x, torch.zeros_like(x)).requires_grad_(True)
        full = aggregate(x, mask, mode, max_len=8)
        (g_full,) = torch.autograd.grad(full, x)
        norm = global_normalizers(mask.sum(-1).tolist(), max_len=8)
        perm = torch.randperm(11, generator=torch.Generator().manual_seed(seed))
        cuts = sorted(
            torch.randint(1, 11, (3,), generator=torch.Generator().manual_seed(seed + 9)).tolist()
        )
        chunks = [perm[a:b] for a, b in zip([0] + cuts, cuts + [11], strict=True) if b > a]
        total = 0.0
        g_sum = torch.zeros_like(x)
        for idx in chunks:
            # each micro-batch may also be padded to its own shorter width
            width = int(mask[idx].sum(-1).max())
            xs = x[idx][:, :width]
            share = aggregate(xs, mask[idx][:, :width], mode, **norm)  # max_len=8 in norm
            (g,) = torch.autograd.grad(share, x)
            g_sum += g
            total += share.item()
        assert total == pytest.approx(full.item(), abs=1e-10)
        assert torch.allclose(g_sum, g_full, atol=1e-12)


def test_policy_loss_forwards_normalisers():
    x, mask = _batch(4, B=6, T=5)
    lp = torch.where(mask, -x.abs(), torch.zeros_like(x)).requires_grad_(True)
    old = (lp.detach() + 0.05 * torch.randn_like(lp)).detach()
    adv = torch.randn(6, dtype=D)
    norm = global_normalizers(mask.sum(-1).tolist(), max_len=5)
    for agg in AGG_MODES:
        full, _ = policy_loss(
            "ppo", logprobs=lp, old_logprobs=old, advantages=adv, mask=mask, agg=agg, max_len=5
        )
        parts = [
            policy_loss(
                "ppo",
                logprobs=lp[s],
                old_logprobs=old[s],
                advantages=adv[s],
                mask=mask[s],
                agg=agg,
                **norm,  # with max_len=5
            )[0]
            for s in (slice(0, 2), slice(2, 3), slice(3, 6))
        ]
        assert sum(p.item() for p in parts) == pytest.approx(full.item(), abs=1e-10)


def test_unknown_mode():
    with pytest.raises(ValueError, match="token-mean"):
        aggregate(torch.zeros(1, 1), torch.ones(1, 1), "token_mean")


@pytest.mark.parametrize("mode", AGG_MODES)
def test_aggregate_gradcheck(mode):
    x, mask = _batch(8, B=3, T=4)
    x = torch.where(mask, x, torch.zeros_like(x)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: aggregate(v, mask, mode, num_seqs=5.0), (x,))
