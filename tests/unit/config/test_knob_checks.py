"""Every `*_kw` knob dict is checked against the signature of the callable it goes to before a
run starts (rlkit.runtime.recipe_checks): a typo is one ConfigError naming the key, the unknown
knob and the accepted ones, never swallowed."""

from __future__ import annotations

import pytest

from rlkit.config.loader import ConfigError, config_from_dict
from rlkit.runtime.prepare import check_plugins


def _check(**sections) -> None:
    check_plugins(config_from_dict({"model": {"kind": "tiny"}, **sections}))


@pytest.mark.parametrize(
    "sections, key, accepted",
    [
        ({"algo": {"advantage_kw": {"epsilonn": 1e-4}}}, "algo.advantage_kw", "epsilon"),
        (  # grpo_vps forwards its extra knobs to grpo: checked against both
            {"algo": {"advantage": "grpo_vps", "advantage_kw": {"std_scal": "batch"}}},
            "algo.advantage_kw",
            "std_scale",
        ),
        (
            {"algo": {"advantage": "asyppo", "advantage_kw": {"lamb": 0.9}},
             "critic": {"enabled": True}},
            "algo.advantage_kw",
            "lam",
        ),
        ({"algo": {"loss_kw": {"clip_eps_hi": 0.28}}}, "algo.loss_kw", "clip_eps_high"),
        (  # cispo has no dual clip
            {"algo": {"policy_loss": "cispo", "loss_kw": {"dual_clip_c": 3.0}}},
            "algo.loss_kw",
            "clip_eps_high",
        ),
        (
            {"algo": {"loss_terms": [{"term": "kl", "kwargs": {"knd": "k3"}}]}},
            r"algo.loss_terms\[0\].kwargs",
            "kind",
        ),
        (  # the policy term forwards to the loss it names
            {"algo": {"loss_terms": [{"term": "policy", "kwargs": {"loss": "gspo", "tis": 2}}]}},
            r"algo.loss_terms\[0\].kwargs",
            "tis_cap",
        ),
        (
            {"algo": {"token_hook": "attention_credit", "token_hook_kw": {"windw": 3}}},
            "algo.token_hook_kw",
            "window",
        ),
        (
            {"algo": {"advantage": "asyppo", "credit_kw": {"asyppo_masks": {"adv_low": 0.1}}},
             "critic": {"enabled": True}},
            "algo.credit_kw.asyppo_masks",
            "adv_low_frac",
        ),
        (
            {"algo": {"credit_kw": {"asyppo_mask": {"adv_low_frac": 0.1}}}},
            "algo.credit_kw",
            "advantage",  # the recipe's stages are listed
        ),
        ({"rollout": {"strategy_kw": {"topk": 3}}}, "rollout.strategy_kw", "top_k"),
    ],
)  # fmt: skip
def test_a_typo_in_a_knob_dict_is_one_error_naming_the_key(sections, key, accepted):
    with pytest.raises(ConfigError, match=rf"^{key}: ") as err:
        _check(**sections)
    assert accepted in str(err.value) and "\n" not in str(err.value)


def test_a_typo_in_reward_kwargs_is_an_error(tmp_path):
    f = tmp_path / "my_reward.py"
    f.write_text("def bonus(prompt, completion, scale=1.0):\n    return scale\n")
    fns = [{"fn": f"{f}:bonus", "kwargs": {"scal": 2.0}}]
    with pytest.raises(ConfigError, match=r"^reward.fns\[0\].kwargs: .*'scal'.*scale"):
        _check(reward={"fns": fns})
    _check(reward={"fns": [{"fn": f"{f}:bonus", "kwargs": {"scale": 2.0}}]})


def test_right_knobs_pass_and_kw_callables_accept_anything(tmp_path):
    _check(algo={"advantage_kw": {"epsilon": 1e-4, "std_scale": "batch"}})
    _check(algo={"advantage": "grpo_vps", "advantage_kw": {"lam": 0.5, "epsilon": 1e-4}})
    _check(algo={"loss_kw": {"clip_eps_high": 0.28, "adv_streams": ["adv_weight"]}})
    _check(algo={"token_hook": "attention_credit", "token_hook_kw": {"window": 4, "k": 2}})
    f = tmp_path / "my_algo.py"
    f.write_text("def adv(*, rewards, group_ids, **kw):\n    return rewards\n")
    _check(algo={"advantage": f"{f}:adv", "advantage_kw": {"anything": 1}})
