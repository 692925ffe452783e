"""The keyword form of the built-in policy losses (rlkit.algos._pg_common): `behavior_corrected`
and `keyword_loss` turn a core on PGTensors into the public loss, with the whole keyword list in
its signature (check_plugins reads it) and the TIS tail defined once."""

import inspect

import pytest
import torch

from rlkit.algos import POLICY_LOSSES
from rlkit.algos._pg_common import PGTensors, behavior_corrected, keyword_loss

D = torch.float64
HEAD = ["logprobs", "old_logprobs", "advantages", "mask", "behavior_logprobs"]
TAIL = {  # the behaviour-correction knobs (_pg_common.BehaviorKnobs), after each core's own
    "behavior_correction": "tis",
    "tis_cap": 2.0,
    "mis_low": 0.5,
    "mis_high": 2.0,
    "icepop_low": 0.5,
    "icepop_high": 5.0,
}
OWN = {  # each built-in's own knobs and their defaults, as docs/algorithms.md lists them
    "ppo": {"clip_eps_low": 0.2, "clip_eps_high": 0.2, "dual_clip_c": None, **TAIL},
    "gspo": {"clip_eps_low": 3e-4, "clip_eps_high": 4e-4, **TAIL},
    "topr": {"rewards": None, "positive_weight": 1.0, "negative_weight": 1.0, **TAIL},
    "cispo": {"clip_eps_low": 0.1, "clip_eps_high": 0.1, **TAIL},
    "tis": {"tis_cap": 2.0},
    "decoupled_ppo": {
        "clip_eps_low": 0.2,
        "clip_eps_high": 0.2,
        "dual_clip_c": None,
        "is_cap": 1.2,
        "is_level": "token",
        "ratio_mask": None,
    },
}


@pytest.mark.parametrize("name", sorted(OWN))
def test_builtin_signature_is_the_public_keyword_form(name):
    params = inspect.signature(POLICY_LOSSES[name]).parameters
    assert list(params) == HEAD + list(OWN[name])
    assert all(p.kind is p.KEYWORD_ONLY for p in params.values())
    assert all(params[n].default is inspect.Parameter.empty for n in HEAD[:4])
    assert params["behavior_logprobs"].default is None
    assert {n: params[n].default for n in OWN[name]} == OWN[name]
    assert POLICY_LOSSES[name].__name__ == f"{name}_loss"


def _inputs():
    lp = torch.log(torch.tensor([[0.5, 0.2, 0.9]], dtype=D))
    old = torch.log(torch.tensor([[0.4, 0.4, 0.3]], dtype=D))
    beh = torch.log(torch.tensor([[0.1, 0.8, 0.3]], dtype=D))  # pi_old/mu = 4 (-> cap 2), 0.5, 1
    return (
        lp,
        old,
        torch.tensor([[1.0, -2.0, 0.5]], dtype=D),
        torch.tensor([[True, True, False]]),
        beh,
    )


@behavior_corrected
def _vanilla_core(t: PGTensors, *, scale: float = 1.0):
    """-scale * A * log pi_theta; the ratio it reports is pi_theta/pi_old."""
    ratio = torch.exp(t.logprobs - t.old_logprobs)
    return -scale * t.advantages * t.logprobs, {"pg/is_weight_mean": -1.0, "core/x": 1.0}, ratio


def test_behavior_corrected_applies_the_tis_tail():
    lp, old, adv, mask, beh = _inputs()
    kw = dict(logprobs=lp, old_logprobs=old, advantages=adv, mask=mask)
    base = -3.0 * adv * lp
    per_token, loss_mask, met = _vanilla_core(**kw, scale=3.0)  # no mu: the core's loss as is
    assert torch.equal(per_token, base) and loss_mask is mask
    assert met["pg/is_weight_mean"] == -1.0 and met["core/x"] == 1.0
    assert met["pg/ratio_max"] == pytest.approx(1.25) and met["pg/ratio_min"] == pytest.approx(0.5)
    per_token, _, met = _vanilla_core(**kw, behavior_logprobs=beh, scale=3.0)
    assert torch.allclose(per_token, base * torch.tensor([[2.0, 0.5, 1.0]], dtype=D))
    assert met["pg/is_weight_mean"] == pytest.approx(1.25)  # the weight's metrics win
    assert met["pg/is_clip_frac"] == pytest.approx(0.5)
    per_token, _, _ = _vanilla_core(**kw, behavior_logprobs=beh, tis_cap=5.0)
    assert torch.allclose(per_token, -adv * lp * torch.tensor([[4.0, 0.5, 1.0]], dtype=D))
    per_token, _, met = _vanilla_core(**kw, behavior_logprobs=beh, behavior_correction="none")
    assert torch.equal(per_token, -adv * lp) and "pg/is_clip_frac" not in met
    with pytest.raises(ValueError, match="behavior_correction"):
        _vanilla_core(**kw, behavior_correction="is")


def test_keyword_loss_hands_mu_to_the_core():
    lp, old, adv, mask, beh = _inputs()
    seen = {}

    @keyword_loss
    def mine(t: PGTensors, behavior_logprobs, *, cap: float = 1.5):
        seen.update(t=t, mu=behavior_logprobs, cap=cap)
        return -adv * lp, mask & (adv > 0), {}

    assert list(inspect.signature(mine).parameters) == HEAD + ["cap"]
    _, loss_mask, _ = mine(logprobs=lp, old_logprobs=old, advantages=adv, mask=mask)
    assert seen["mu"] is None and seen["cap"] == 1.5 and seen["t"].old_logprobs is old
    assert loss_mask.tolist() == [[True, False, False]]
    mine(logprobs=lp, old_logprobs=old, advantages=adv, mask=mask, behavior_logprobs=beh, cap=2)
    assert seen["mu"] is beh and seen["cap"] == 2


def test_a_typo_or_a_missing_tensor_names_the_loss():
    lp, old, adv, mask, _ = _inputs()
    with pytest.raises(TypeError, match=r"_vanilla_core\(\).*'scal'"):
        _vanilla_core(logprobs=lp, old_logprobs=old, advantages=adv, mask=mask, scal=2.0)
    with pytest.raises(TypeError, match=r"cispo_loss\(\).*'dual_clip_c'"):
        POLICY_LOSSES["cispo"](
            logprobs=lp, old_logprobs=old, advantages=adv, mask=mask, dual_clip_c=3
        )
    with pytest.raises(TypeError, match=r"tis_loss\(\).*'mask'"):
        POLICY_LOSSES["tis"](logprobs=lp, old_logprobs=old, advantages=adv)
    with pytest.raises(TypeError):  # the public form takes keywords only
        POLICY_LOSSES["ppo"](lp, old, adv, mask)


def test_a_core_cannot_shadow_the_public_keywords():
    with pytest.raises(TypeError, match="tis_cap"):

        @behavior_corrected
        def twice(t, *, tis_cap=1.0):
            return t.logprobs, {}, t.logprobs

    with pytest.raises(TypeError, match="kw"):

        @keyword_loss
        def anything(t, behavior_logprobs, **kw):
            return t.logprobs, t.mask, {}
