"""Rollout–trainer mismatch: the `mismatch/*` metrics and every `behavior_correction` mode of the
policy loss, against values computed by hand on two tiny sequences (docs/algorithms.md,
"Rollout–trainer mismatch")."""

from __future__ import annotations

import math

import pytest
import torch

from rlkit.algos import POLICY_LOSSES, policy_loss
from rlkit.algos.loss_terms import LossContext, LossTerm, total_loss
from rlkit.algos.mismatch import mismatch_metrics

D = torch.float64
# rho = pi_old/mu per token. Row 1's middle token is not the model's (an environment token or a
# hole): its rho = 100 must change nothing.
RHO = [[6.0, 0.5, 1.5], [0.25, 100.0, 0.5]]
MASK = torch.tensor([[True, True, True], [True, False, True]])
VALID = [6.0, 0.5, 1.5, 0.25, 0.5]  # the model tokens' rho, row by row


def _inputs():
    """pi_theta = pi_old (so the PPO ratio is 1 and the ppo loss per token is -A * w) and A = 1:
    a token's loss is minus its correction weight."""
    old = torch.log(torch.tensor([[0.3, 0.2, 0.6], [0.1, 0.4, 0.25]], dtype=D))
    beh = old - torch.log(torch.tensor(RHO, dtype=D))
    lp = old.clone().requires_grad_(True)
    return lp, old, torch.ones(2, 3, dtype=D), beh


def _weights(mode: str, **knobs) -> tuple[torch.Tensor, dict]:
    """The correction weight of each token, read off the ppo loss (-A * r * w with A = r = 1)."""
    lp, old, adv, beh = _inputs()
    per_token, loss_mask, met = POLICY_LOSSES["ppo"](
        logprobs=lp, old_logprobs=old, advantages=adv, mask=MASK, behavior_logprobs=beh,
        behavior_correction=mode, **knobs,
    )  # fmt: skip
    assert torch.equal(loss_mask, MASK)  # a dropped token keeps counting in the normalisers
    return (-per_token).detach().masked_fill(~MASK, float("nan")), met


NAN = float("nan")
GEO = (4.5 ** (1 / 3), 0.125**0.5)  # geometric-mean rho of the rows: 6*.5*1.5 = 4.5, .25*.5


@pytest.mark.parametrize(
    "mode, knobs, expected, metrics",
    [
        ("none", {}, [[1, 1, 1], [1, NAN, 1]], {}),
        # token TIS, C = 2: min(rho, 2)
        ("tis", {}, [[2, 0.5, 1.5], [0.25, NAN, 0.5]],
         {"pg/is_weight_mean": 4.75 / 5, "pg/is_clip_frac": 1 / 5}),
        # sequence TIS: min(prod rho, C) on every token; row 0: 4.5 -> 2, row 1: 0.125
        ("seq_tis", {}, [[2, 2, 2], [0.125, NAN, 0.125]],
         {"pg/is_weight_mean": 6.25 / 5, "pg/is_clip_frac": 3 / 5}),
        ("seq_tis", {"tis_cap": 5.0}, [[4.5, 4.5, 4.5], [0.125, NAN, 0.125]],
         {"pg/is_clip_frac": 0.0}),
        # token MIS (rejection), [0.5, 2] inclusive: 6 and 0.25 are dropped, kept tokens weigh 1
        ("mis", {}, [[0, 1, 1], [0, NAN, 1]],
         {"pg/is_weight_mean": 3 / 5, "pg/is_masked_frac": 2 / 5}),
        ("mis", {"mis_low": 0.4, "mis_high": 7.0}, [[1, 1, 1], [0, NAN, 1]],
         {"pg/is_masked_frac": 1 / 5}),
        # sequence MIS by the geometric mean: row 0 1.651 kept, row 1 0.354 dropped whole
        ("seq_mis", {}, [[1, 1, 1], [0, NAN, 0]],
         {"pg/is_weight_mean": 3 / 5, "pg/is_masked_frac": 2 / 5}),
        ("seq_mis", {"mis_low": 0.3}, [[1, 1, 1], [1, NAN, 1]], {"pg/is_masked_frac": 0.0}),
        # IcePop, [0.5, 5]: rho kept as the weight inside, 0 outside (6 and 0.25)
        ("icepop", {}, [[0, 0.5, 1.5], [0, NAN, 0.5]],
         {"pg/is_weight_mean": 2.5 / 5, "pg/is_masked_frac": 2 / 5}),
        ("icepop", {"icepop_low": 0.2, "icepop_high": 7.0}, [[6, 0.5, 1.5], [0.25, NAN, 0.5]],
         {"pg/is_masked_frac": 0.0}),
    ],
)  # fmt: skip
def test_each_correction_weighs_tokens_as_computed_by_hand(mode, knobs, expected, metrics):
    w, met = _weights(mode, **knobs)
    torch.testing.assert_close(w, torch.tensor(expected, dtype=D), equal_nan=True)
    for key, value in metrics.items():
        assert met[key] == pytest.approx(value), key
    if mode == "none":
        assert "pg/is_weight_mean" not in met and "pg/is_masked_frac" not in met


@pytest.mark.parametrize("mode", ["tis", "seq_tis", "mis", "seq_mis", "icepop"])
def test_the_loss_and_its_gradient_carry_the_detached_weight(mode):
    """Aggregated (token-mean over the 5 model tokens): loss = -sum w / 5, d loss / d log pi_theta
    = -w / 5 on model tokens and 0 elsewhere: the weight is a constant, not differentiated."""
    w = _weights(mode)[0].nan_to_num(0.0)
    lp, old, adv, beh = _inputs()
    loss, met = policy_loss(
        "ppo", logprobs=lp, old_logprobs=old, advantages=adv[:, 0], mask=MASK,
        behavior_logprobs=beh, behavior_correction=mode,
    )  # fmt: skip
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-float(w.sum()) / 5)
    assert torch.allclose(lp.grad, -w / 5)


@pytest.mark.parametrize("name", ["ppo", "gspo", "topr", "cispo"])
@pytest.mark.parametrize("mode", ["seq_tis", "mis", "seq_mis", "icepop"])
def test_every_behaviour_corrected_loss_takes_every_mode(name, mode):
    """The correction multiplies the loss's own per-token loss (the one it has without mu)."""
    w = _weights(mode)[0].nan_to_num(0.0)
    lp, old, adv, beh = _inputs()
    lp = (old + torch.tensor([[0.1, -0.2, 0.05], [0.3, 0.0, -0.1]], dtype=D)).requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]], dtype=D)
    kw = dict(logprobs=lp, old_logprobs=old, advantages=adv, mask=MASK)
    plain, _, _ = POLICY_LOSSES[name](**kw, behavior_logprobs=beh, behavior_correction="none")
    corrected, _, _ = POLICY_LOSSES[name](**kw, behavior_logprobs=beh, behavior_correction=mode)
    assert torch.allclose(corrected[MASK], (plain * w)[MASK])


def test_a_dropped_sequence_leaves_the_loss_split_invariant():
    """Micro-batches with the step's global normalisers add up to the whole batch."""
    lp, old, adv, beh = _inputs()
    kw = dict(behavior_correction="seq_mis", agg="seq-mean-token-mean", num_seqs=2.0)
    whole, _ = policy_loss(
        "ppo", logprobs=lp, old_logprobs=old, advantages=adv, mask=MASK, behavior_logprobs=beh, **kw
    )
    parts = [
        policy_loss(
            "ppo", logprobs=lp[i : i + 1], old_logprobs=old[i : i + 1], advantages=adv[i : i + 1],
            mask=MASK[i : i + 1], behavior_logprobs=beh[i : i + 1], **kw,
        )[0]
        for i in range(2)
    ]  # fmt: skip
    assert float(sum(parts).detach()) == pytest.approx(float(whole.detach()))
    # row 0: three tokens of weight 1 (mean 1); row 1 dropped; over num_seqs = 2
    assert float(whole.detach()) == pytest.approx(-1.0 / 2)


def test_bad_modes_and_bands_are_errors():
    lp, old, adv, beh = _inputs()
    kw = dict(logprobs=lp, old_logprobs=old, advantages=adv, mask=MASK, behavior_logprobs=beh)
    with pytest.raises(ValueError, match="behavior_correction.*icepop"):
        POLICY_LOSSES["ppo"](**kw, behavior_correction="ice_pop")
    with pytest.raises(ValueError, match=r"mis: .*\[2.0, 0.5\]"):
        POLICY_LOSSES["ppo"](**kw, behavior_correction="mis", mis_low=2.0, mis_high=0.5)
    with pytest.raises(ValueError, match="icepop"):
        POLICY_LOSSES["ppo"](**kw, behavior_correction="icepop", icepop_low=-1.0)


def test_mismatch_metrics_by_hand():
    _, old, _, beh = _inputs()
    met = mismatch_metrics(old, beh, MASK)
    logs = [math.log(r) for r in VALID]
    assert met["mismatch/kl_k3"] == pytest.approx(sum(r - 1 - math.log(r) for r in VALID) / 5)
    assert met["mismatch/log_ratio_abs_mean"] == pytest.approx(sum(map(abs, logs)) / 5)
    assert met["mismatch/log_ratio_abs_max"] == pytest.approx(math.log(6.0))
    assert met["mismatch/ratio_mean"] == pytest.approx(8.75 / 5)
    assert met["mismatch/ratio_max"] == pytest.approx(6.0)
    assert met["mismatch/ratio_min"] == pytest.approx(0.25)
    assert met["mismatch/ratio_out_frac"] == pytest.approx(2 / 5)  # 6 and 0.25; 0.5 is inside
    assert met["mismatch/seq_ratio_mean"] == pytest.approx(sum(GEO) / 2)
    assert met["mismatch/seq_ratio_max"] == pytest.approx(GEO[0])
    assert met["mismatch/seq_ratio_min"] == pytest.approx(GEO[1])
    assert met["mismatch/seq_log_ratio_max"] == pytest.approx(math.log(4.5))
    assert met["mismatch/seq_log_ratio_min"] == pytest.approx(math.log(0.125))
    assert met["mismatch/seq_log_ratio_mean"] == pytest.approx(math.log(4.5 * 0.125) / 2)


def test_no_mismatch_reads_zero_and_nothing_valid_reads_zero():
    _, old, _, _ = _inputs()
    met = mismatch_metrics(old, old.clone(), MASK)
    assert met["mismatch/kl_k3"] == 0.0 and met["mismatch/log_ratio_abs_max"] == 0.0
    assert met["mismatch/ratio_max"] == 1.0 and met["mismatch/seq_ratio_min"] == 1.0
    empty = mismatch_metrics(old, old - 1.0, torch.zeros(2, 3, dtype=torch.bool))
    assert set(empty.values()) == {0.0} and len(empty) == len(met)


@pytest.mark.parametrize("name", sorted(["ppo", "gspo", "topr", "cispo", "tis", "decoupled_ppo"]))
def test_every_loss_reports_the_mismatch_when_mu_is_given(name):
    lp, old, adv, beh = _inputs()
    kw = dict(logprobs=lp, old_logprobs=old, advantages=adv, mask=MASK)
    _, met = policy_loss(name, **kw, behavior_logprobs=beh)
    assert met["mismatch/ratio_max"] == pytest.approx(6.0)
    k3 = mismatch_metrics(old, beh, MASK)["mismatch/kl_k3"]
    assert met["mismatch/kl_k3"] == pytest.approx(k3) and k3 > 0
    _, met = policy_loss(name, **kw)
    assert not any(k.startswith("mismatch/") for k in met)


def test_the_trainer_policy_term_logs_the_mismatch_on_model_tokens_only():
    """As the trainer runs it: pi_old is this forward's log-probs (one update per step), mu the
    batch's behaviour stream; the response mask's holes are not counted."""
    lp, _, _, beh = _inputs()
    batch = {
        "response_mask": MASK.to(D),
        "behavior_logprobs": beh,
        "advantages": torch.ones(2, 3, dtype=D),
    }
    ctx = LossContext(batch, lp, torch.zeros(2, 3, 4, dtype=D), "token-mean", {}, _entropy=lp)
    _, met = total_loss([LossTerm("policy", 1.0, {"behavior_correction": "icepop"})], ctx)
    assert met["mismatch/ratio_max"] == pytest.approx(6.0)
    assert met["mismatch/ratio_min"] == pytest.approx(0.25)
    assert met["pg/is_masked_frac"] == pytest.approx(2 / 5)


def test_a_recipe_sets_the_correction_knobs_and_a_typo_is_named():
    from rlkit.config.loader import ConfigError, config_from_dict
    from rlkit.runtime.prepare import check_plugins

    def check(loss_kw: dict) -> None:
        check_plugins(config_from_dict({"model": {"kind": "tiny"}, "algo": {"loss_kw": loss_kw}}))

    check({"behavior_correction": "seq_mis", "mis_low": 0.99, "mis_high": 1.01})
    with pytest.raises(ConfigError, match="'icepop_hi'.*icepop_high"):
        check({"behavior_correction": "icepop", "icepop_hi": 4.0})
