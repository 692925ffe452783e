"""Registries: custom registration, duplicate names, clear unknown-name errors."""

import pytest
import torch

from rlkit.algos import (
    ADVANTAGES,
    POLICY_LOSSES,
    UnknownNameError,
    compute_advantages,
    register_advantage,
)


def test_expected_names_registered():
    assert {"grpo", "dr_grpo", "rloo", "reinforce_pp", "gae", "token_level"} <= set(ADVANTAGES)
    assert {"ppo", "gspo", "tis", "topr", "cispo", "decoupled_ppo"} <= set(POLICY_LOSSES)


@pytest.mark.parametrize("registry", [ADVANTAGES, POLICY_LOSSES])
def test_unknown_name_is_keyerror_and_valueerror_listing_known(registry):
    for exc in (KeyError, ValueError, UnknownNameError):
        with pytest.raises(exc) as e:
            registry["nope"]
        msg = str(e.value)
        assert "'nope'" in msg and all(name in msg for name in registry)
        assert not msg.startswith('"')  # readable, not a repr'd KeyError


def test_register_custom_advantage_and_duplicate():
    @register_advantage("_test_raw")
    def _raw(*, rewards, **_):
        return rewards * 2

    try:
        out = compute_advantages("_test_raw", rewards=torch.tensor([1.0, 2.0]), group_ids=[0, 0])
        assert out.tolist() == [2.0, 4.0]
        with pytest.raises(ValueError, match="already registered"):
            register_advantage("_test_raw")(_raw)
        register_advantage("_test_raw", override=True)(lambda **kw: kw["rewards"])
        assert compute_advantages("_test_raw", rewards=torch.ones(1), group_ids=[0]).item() == 1
    finally:
        ADVANTAGES.pop("_test_raw")
