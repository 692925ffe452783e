"""AsyPPO's pure parts (arXiv 2510.01656): σ and the two masks against hand-made cases (ties,
M = 2 and 3, padded rows), the `asyppo` estimator, the recipe rules, and the masks reaching the
loss (the policy gradient vanishes where adv_mask is 0; the entropy bonus where entropy_mask is)."""

from __future__ import annotations

import math

import pytest
import torch

from rlkit.algos import ADVANTAGES, compute_advantages, disjoint_shares
from rlkit.algos.declared import critic_count, critic_split
from rlkit.algos.loss_terms import LossContext, LossTerm, total_loss
from rlkit.config.loader import ConfigError, config_from_dict
from rlkit.config.semantics import check_semantics
from rlkit.methods.asyppo import asyppo_masks, asyppo_metrics
from rlkit.runtime.prepare import check_plugins

S2 = math.sqrt(2.0)


def _two_critics(sigma_rows: list[list[float]]) -> torch.Tensor:
    """Values [2, B, T] whose unbiased std over the critics is exactly `sigma_rows`."""
    s = torch.tensor(sigma_rows)
    return torch.stack([torch.zeros_like(s), s * S2])


def test_m2_sigma_is_bessel_std_and_masks_follow_the_quantiles():
    values = _two_critics([[0.0, 1.0, 2.0, 3.0, 4.0]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    sigma, adv, ent = asyppo_masks(values, mask)
    # unbiased std of two numbers a, b: |a - b| / sqrt(2)
    assert torch.allclose(sigma, torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]), atol=1e-6)
    # q_lo = quantile([0..4], 0.2) = 0.8 ; q_hi = quantile(0.8) = 3.2
    assert adv.tolist() == [[False, True, True, True, True]]
    assert ent.tolist() == [[True, True, True, True, False]]
    assert adv.dtype == torch.bool and ent.dtype == torch.bool


def test_m3_sigma_matches_the_hand_formula():
    values = torch.tensor([[[1.0, 0.0, 5.0]], [[2.0, 0.0, 5.0]], [[6.0, 3.0, 5.0]]])  # [3, 1, 3]
    sigma, adv, ent = asyppo_masks(values, torch.ones(1, 3, dtype=torch.bool), adv_low_frac=0.5)
    hand = []
    for t in range(3):
        xs = [float(values[m, 0, t]) for m in range(3)]
        mu = sum(xs) / 3
        hand.append(math.sqrt(sum((x - mu) ** 2 for x in xs) / 2))  # divisor M - 1
    assert torch.allclose(sigma[0], torch.tensor(hand), atol=1e-6)
    # σ = [2.646, 1.732, 0]: q_lo (0.5) = 1.732 -> only the largest survives; q_hi (0.8) = 2.29
    assert adv.tolist() == [[True, False, False]]
    assert ent.tolist() == [[False, True, True]]


def test_ties_are_dropped_together():
    values = _two_critics([[1.0, 1.0, 1.0, 1.0, 2.0]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    _, adv, ent = asyppo_masks(values, mask)
    # q_lo = 1 (tie): only σ = 2 is strictly above; q_hi = 1.2: the four 1s stay
    assert adv.tolist() == [[False, False, False, False, True]]
    assert ent.tolist() == [[True, True, True, True, False]]
    same = _two_critics([[0.5, 0.5, 0.5]])
    _, adv, ent = asyppo_masks(same, torch.ones(1, 3, dtype=torch.bool))
    assert not adv.any() and not ent.any()  # critics agree everywhere: nothing left


def test_padded_rows_neither_count_nor_survive():
    sig = [[0.0, 1.0, 2.0, 3.0, 4.0], [9.0, 9.0, 99.0, 99.0, 99.0]]
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    sigma, adv, ent = asyppo_masks(_two_critics(sig), mask, adv_low_frac=0.25, ent_high_frac=0.25)
    assert (sigma[~mask] == 0).all() and not adv[~mask].any() and not ent[~mask].any()
    # quantiles over the 7 valid σ only [0,1,2,3,4,9,9]: q_lo = 1.5, q_hi = 6.5
    valid = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 9.0, 9.0])
    assert torch.quantile(valid, 0.25) == pytest.approx(1.5)
    assert adv.tolist() == [[False, False, True, True, True], [True, True, False, False, False]]
    assert ent.tolist() == [[True, True, True, True, True], [False, False, False, False, False]]
    # the 99s past the row's end change nothing
    sig[1][2:] = [0.0, 0.0, 0.0]
    again = asyppo_masks(_two_critics(sig), mask, adv_low_frac=0.25, ent_high_frac=0.25)
    assert torch.equal(again[1], adv) and torch.equal(again[2], ent)


def test_fractions_near_the_knobs_and_edge_cases():
    torch.manual_seed(0)
    values, mask = torch.randn(2, 16, 50), torch.ones(16, 50, dtype=torch.bool)
    sigma, adv, ent = asyppo_masks(values, mask)
    m = asyppo_metrics(values, sigma, adv, ent, mask)
    assert m["asyppo/adv_masked_frac"] == pytest.approx(0.2, abs=0.01)
    assert m["asyppo/ent_masked_frac"] == pytest.approx(0.2, abs=0.01)
    assert m["asyppo/sigma_p10"] < m["asyppo/sigma_p50"] < m["asyppo/sigma_p90"]
    assert m["asyppo/value_mean"] == pytest.approx(float(values.mean(0).mean()), abs=1e-5)
    empty = asyppo_masks(values, torch.zeros_like(mask))
    assert not empty[1].any() and not empty[2].any()
    with pytest.raises(ValueError, match="at least 2 critics"):
        asyppo_masks(values[:1], mask)
    with pytest.raises(ValueError, match="adv_low_frac"):
        asyppo_masks(values, mask, adv_low_frac=1.5)


def test_asyppo_estimator_is_gae_on_the_given_values_and_declares_its_stages():
    torch.manual_seed(1)
    rewards, values = torch.tensor([1.0, 0.0, 1.0]), torch.randn(3, 4)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    kw = dict(rewards=rewards, group_ids=torch.tensor([0, 0, 1]), mask=mask, values=values)
    assert torch.allclose(compute_advantages("asyppo", **kw), compute_advantages("gae", **kw))
    assert ADVANTAGES["asyppo"].credit_stages == ("asyppo_masks",)


def _cfg(**sections):
    base = {"model": {"kind": "tiny"}, "algo": {"advantage": "asyppo"}}
    return config_from_dict({**base, **sections})


def test_recipe_rules_default_two_critics():
    """AsyPPO declares its needs; check_plugins holds a recipe to them before a run starts."""
    assert critic_count(_cfg(critic={"enabled": True})) == 2
    assert check_semantics(_cfg(critic={"enabled": True})) == []
    check_plugins(_cfg(critic={"enabled": True}))
    with pytest.raises(ConfigError, match=r"^critic.enabled: .*asyppo"):
        check_plugins(_cfg())
    with pytest.raises(ConfigError, match=r"^critic.num_critics: .*>= 2 for asyppo"):
        check_plugins(_cfg(critic={"enabled": True, "num_critics": 1}))
    gae = config_from_dict({"model": {"kind": "tiny"}, "algo": {"advantage": "gae"},
                            "critic": {"enabled": True}})  # fmt: skip
    assert critic_count(gae) == 1
    check_plugins(gae)
    with pytest.raises(ConfigError, match=r"^critic.enabled: "):  # grpo reads no critic values
        check_plugins(config_from_dict({"model": {"kind": "tiny"}, "critic": {"enabled": True}}))


def test_shards_are_disjoint_cover_the_batch_and_split_every_group():
    sizes = [4, 4, 6]
    assert critic_split(_cfg(critic={"enabled": True})) is disjoint_shares  # AsyPPO declares it
    subsets = disjoint_shares(sizes, 2)
    flat = [i for s in subsets for i in s]
    assert sorted(flat) == list(range(sum(sizes))) and len(flat) == len(set(flat))
    starts = [0, 4, 8]
    for start, size in zip(starts, sizes):  # each critic: half of every group
        for sub in subsets:
            assert len([i for i in sub if start <= i < start + size]) == size // 2


def _ctx(**streams) -> LossContext:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, requires_grad=True)
    targets = torch.tensor([[1, 2, 3, 4], [5, 0, 1, 2]])
    logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    batch = {
        "response_mask": torch.ones(2, 4),
        "behavior_logprobs": logp.detach(),
        "advantages": torch.tensor([[1.0, -1.0, 2.0, 0.5], [-1.0, 1.0, 1.0, -2.0]]),
        **streams,
    }
    norms = {"num_tokens": 8.0, "num_seqs": 2.0, "max_len": 4.0}
    return LossContext(batch, logp, logits, "token-mean", norms)


def _token_grads(term: str, **streams) -> torch.Tensor:
    """|∂ loss / ∂ logits| summed over the vocab: [2, 4]."""
    ctx = _ctx(**streams)
    loss, _ = total_loss([LossTerm(term, 1.0)], ctx)
    loss.backward()
    return ctx.logits.grad.abs().sum(-1)


def test_adv_mask_reaches_the_policy_loss():
    full = _token_grads("policy")
    assert (full > 0).all()
    assert (_token_grads("policy", adv_mask=torch.zeros(2, 4)) == 0).all()
    part = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    g = _token_grads("policy", adv_mask=part)
    assert (g[part == 0] == 0).all() and torch.allclose(g[part == 1], full[part == 1])


def test_entropy_mask_reaches_the_entropy_bonus():
    assert (_token_grads("entropy") > 0).all()
    part = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    g = _token_grads("entropy", entropy_mask=part)
    assert (g[part == 0] == 0).all() and (g[part == 1] > 0).all()


@pytest.mark.parametrize("name", ["asyppo_cpu", "asyppo_gpu_cluster"])
def test_recipes_load_and_select_asyppo(name):
    from pathlib import Path

    from rlkit.config.loader import load_recipe
    from rlkit.credit.pipeline import stage_names

    cfg = load_recipe(Path(__file__).resolve().parents[3] / "recipes" / f"{name}.yaml")
    assert cfg.algo.advantage == "asyppo" and critic_count(cfg) == 2
    assert cfg.algo.entropy_coef == pytest.approx(1e-3)
    assert "asyppo_masks" in stage_names(cfg)
    if name == "asyppo_gpu_cluster":  # the paper's setting
        assert "Qwen3-4B" in cfg.model.path and "Qwen3-0.6B" in cfg.critic.model_path
        assert cfg.data.num_prompts == 5000
    else:
        assert cfg.critic.tiny.hidden_size < cfg.model.tiny.hidden_size
