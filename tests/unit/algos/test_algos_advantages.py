"""Advantage estimators: hand-computed values, loop re-implementations of verl/TRL, edge cases."""

import math
import random

import pytest
import torch

from rlkit.algos import ADVANTAGES, compute_advantages, gae_returns

D = torch.float64


def _groups(seed: int, n_groups: int = 5, max_size: int = 6):
    rng = random.Random(seed)
    ids, rewards = [], []
    for g in range(n_groups):
        for _ in range(rng.randint(1, max_size)):
            ids.append(g * 7 + 3)  # non-contiguous labels
            rewards.append(rng.choice([0.0, 1.0, 0.5, rng.random()]))
    perm = list(range(len(ids)))
    rng.shuffle(perm)
    return (torch.tensor([rewards[i] for i in perm], dtype=D), torch.tensor([ids[i] for i in perm]))


def _ref_grpo_verl(rewards, ids, eps):
    """verl compute_grpo_outcome_advantage, re-derived: dict of lists, torch.std (Bessel)."""
    by = {}
    for r, g in zip(rewards.tolist(), ids.tolist(), strict=True):
        by.setdefault(g, []).append(r)
    out = []
    for r, g in zip(rewards.tolist(), ids.tolist(), strict=True):
        xs = by[g]
        if len(xs) == 1:
            out.append(0.0)  # our convention (verl keeps R/(1+eps) here)
            continue
        mu = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1))
        out.append((r - mu) / (sd + eps))
    return torch.tensor(out, dtype=D)


def test_grpo_hand_values():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 5.0], dtype=D)
    ids = torch.tensor([0, 0, 0, 0, 1])
    a = compute_advantages("grpo", rewards=r, group_ids=ids)
    sd = math.sqrt(1 / 3)  # Bessel std of [1, 0, 0, 1]
    exp = [0.5 / (sd + 1e-6), -0.5 / (sd + 1e-6), -0.5 / (sd + 1e-6), 0.5 / (sd + 1e-6), 0.0]
    assert torch.allclose(a, torch.tensor(exp, dtype=D), atol=1e-12)


def test_grpo_matches_verl_loop():
    for seed in range(5):
        r, ids = _groups(seed)
        for eps in (1e-6, 1e-4):
            a = compute_advantages("grpo", rewards=r, group_ids=ids, epsilon=eps)
            assert torch.allclose(a, _ref_grpo_verl(r, ids, eps), atol=1e-6)


def test_grpo_trl_batch_and_none_scaling():
    """TRL GRPOTrainer: contiguous groups of G, group mean, std over batch or none, eps 1e-4."""
    torch.manual_seed(0)
    G, n = 4, 3
    r = torch.rand(G * n, dtype=D)
    ids = torch.arange(n).repeat_interleave(G)
    means = [sum(r[i * G : (i + 1) * G].tolist()) / G for i in range(n)]
    centred = torch.tensor([r[k].item() - means[k // G] for k in range(G * n)], dtype=D)
    mu = sum(r.tolist()) / len(r)
    batch_sd = math.sqrt(sum((x - mu) ** 2 for x in r.tolist()) / (len(r) - 1))
    a = compute_advantages("grpo", rewards=r, group_ids=ids, epsilon=1e-4, std_scale="batch")
    assert torch.allclose(a, centred / (batch_sd + 1e-4), atol=1e-9)
    a = compute_advantages("grpo", rewards=r, group_ids=ids, std_scale="none")
    assert torch.allclose(a, centred, atol=1e-12)


def test_group_of_size_one_gets_zero():
    r = torch.tensor([3.0, 1.0, 2.0], dtype=D)
    ids = [10, 11, 12]
    for name in ("grpo", "dr_grpo", "rloo"):
        for kw in ({}, {"std_scale": "batch"}) if name == "grpo" else ({},):
            a = compute_advantages(name, rewards=r, group_ids=ids, **kw)
            assert torch.equal(a, torch.zeros(3, dtype=D)), name


def test_equal_rewards_give_zero_not_nan():
    a = compute_advantages("grpo", rewards=torch.ones(4, dtype=D), group_ids=[0, 0, 0, 0])
    assert torch.equal(a, torch.zeros(4, dtype=D))


def test_dr_grpo_and_rloo_hand_values():
    r = torch.tensor([1.0, 2.0, 6.0, 4.0, 0.0], dtype=D)
    ids = ["a", "a", "a", "b", "b"]  # string labels work too
    assert torch.allclose(
        compute_advantages("dr_grpo", rewards=r, group_ids=ids),
        torch.tensor([-2.0, -1.0, 3.0, 2.0, -2.0], dtype=D),
    )
    # RLOO: R_i - mean of the others: 1-4, 2-3.5, 6-1.5, 4-0, 0-4
    assert torch.allclose(
        compute_advantages("rloo", rewards=r, group_ids=ids),
        torch.tensor([-3.0, -1.5, 4.5, 4.0, -4.0], dtype=D),
    )


def test_rloo_matches_loop():
    r, ids = _groups(7)
    out = []
    for i in range(len(r)):
        others = [r[j].item() for j in range(len(r)) if j != i and ids[j] == ids[i]]
        out.append(r[i].item() - sum(others) / len(others) if others else 0.0)
    assert torch.allclose(
        compute_advantages("rloo", rewards=r, group_ids=ids), torch.tensor(out, dtype=D), atol=1e-9
    )


def test_reinforce_pp_sequence_and_token_whitening():
    r, ids = _groups(3)
    B, T = len(r), 6
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    dr = compute_advantages("dr_grpo", rewards=r, group_ids=ids).tolist()
    # sequence-level whitening, plain loops
    mu = sum(dr) / B
    var = sum((x - mu) ** 2 for x in dr) / (B - 1)
    exp = torch.tensor([(x - mu) / math.sqrt(var + 1e-8) for x in dr], dtype=D)
    got = compute_advantages("reinforce_pp", rewards=r, group_ids=ids)
    assert torch.allclose(got, exp, atol=1e-9)
    # token-level (verl): every valid token of response i carries a_i
    toks = [dr[i] for i in range(B) for _ in range(int(lengths[i]))]
    mu = sum(toks) / len(toks)
    var = sum((x - mu) ** 2 for x in toks) / (len(toks) - 1)
    exp = torch.tensor([(x - mu) / math.sqrt(var + 1e-8) for x in dr], dtype=D)
    got = compute_advantages("reinforce_pp", rewards=r, group_ids=ids, mask=mask)
    assert torch.allclose(got, exp, atol=1e-9)


def _ref_gae(rewards, values, mask, gamma, lam):
    """Textbook GAE on the compressed list of valid tokens of each row, scattered back."""
    B, T = values.shape
    adv = torch.zeros(B, T, dtype=D)
    for b in range(B):
        pos = [t for t in range(T) if mask[b, t]]
        last = 0.0
        for k in reversed(range(len(pos))):
            v_next = values[b, pos[k + 1]].item() if k + 1 < len(pos) else 0.0
            delta = rewards[b, pos[k]].item() + gamma * v_next - values[b, pos[k]].item()
            last = delta + gamma * lam * last
            adv[b, pos[k]] = last
    return adv


def test_gae_hand_values():
    # T=3, gamma=1, lam=0.5, reward 1 at the end, V = [0.5, 0.2, 0.4]
    v = torch.tensor([[0.5, 0.2, 0.4]], dtype=D)
    r = torch.tensor([[0.0, 0.0, 1.0]], dtype=D)
    adv, ret = gae_returns(r, v, None, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.4
    d1 = 0.0 + 0.4 - 0.2
    d0 = 0.0 + 0.2 - 0.5
    a2, a1 = d2, d1 + 0.5 * d2
    a0 = d0 + 0.5 * a1
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2]], dtype=D), atol=1e-12)
    assert torch.allclose(ret, adv + v, atol=1e-12)


def test_gae_matches_compressed_loop_with_holes_and_outcome_reward():
    gen = torch.Generator().manual_seed(5)
    B, T = 4, 7
    values = torch.randn(B, T, generator=gen, dtype=D)
    mask = torch.rand(B, T, generator=gen) > 0.3  # interior holes (e.g. tool-output tokens)
    mask[:, 0] = True
    tok_r = torch.randn(B, T, generator=gen, dtype=D)
    for gamma, lam in ((1.0, 0.95), (0.9, 0.7)):
        adv, ret = gae_returns(tok_r, values, mask, gamma=gamma, lam=lam)
        ref = _ref_gae(tok_r, values, mask, gamma, lam)
        assert torch.allclose(adv[mask], ref[mask], atol=1e-9)
        assert torch.allclose(ret[mask], (ref + values)[mask], atol=1e-9)
        assert torch.all(adv[~mask] == 0)
    # outcome reward [B] goes to the last valid token
    outcome = torch.randn(B, generator=gen, dtype=D)
    placed = torch.zeros(B, T, dtype=D)
    for b in range(B):
        placed[b, max(t for t in range(T) if mask[b, t])] = outcome[b]
    adv, _ = gae_returns(outcome, values, mask, gamma=1.0, lam=0.95)
    assert torch.allclose(adv[mask], _ref_gae(placed, values, mask, 1.0, 0.95)[mask], atol=1e-9)


def test_gae_estimator_whitens_by_default():
    gen = torch.Generator().manual_seed(2)
    values = torch.randn(3, 5, generator=gen, dtype=D)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 3:] = False
    r = torch.randn(3, generator=gen, dtype=D)
    raw = compute_advantages(
        "gae", rewards=r, group_ids=None, values=values, mask=mask, whiten=False
    )
    white = compute_advantages("gae", rewards=r, group_ids=None, values=values, mask=mask)
    sel = raw[mask]
    exp = (sel - sel.mean()) / torch.sqrt(sel.var(unbiased=True) + 1e-8)
    assert torch.allclose(white[mask], exp, atol=1e-9)
    assert white.shape == (3, 5)


def test_token_level_passthrough_masked():
    ta = torch.arange(6, dtype=D).reshape(2, 3)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    out = compute_advantages(
        "token_level", rewards=None, group_ids=None, mask=mask, token_advantages=ta
    )
    assert torch.equal(out, torch.tensor([[0.0, 1.0, 0.0], [3.0, 0.0, 0.0]], dtype=D))


def test_unknown_estimator_error_lists_known():
    with pytest.raises(KeyError) as e:
        compute_advantages("grpoo", rewards=torch.zeros(2), group_ids=[0, 0])
    msg = str(e.value)
    assert "grpoo" in msg and all(k in msg for k in ADVANTAGES)
    with pytest.raises(ValueError):
        compute_advantages("grpo", rewards=torch.zeros(2), group_ids=[0, 0], std_scale="bad")


def test_gae_gradcheck():
    gen = torch.Generator().manual_seed(9)
    v = torch.randn(2, 4, generator=gen, dtype=D, requires_grad=True)
    r = torch.randn(2, 4, generator=gen, dtype=D, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1]])
    assert torch.autograd.gradcheck(lambda a, b: gae_returns(a, b, mask, 0.9, 0.8), (r, v))
