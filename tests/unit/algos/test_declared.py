"""What an estimator declares (rlkit.algos.declared) is what the library reads: a user's
estimator gets critics, their count and split, and the recipe checks, without naming a method."""

from __future__ import annotations

import pytest

from rlkit.algos import disjoint_shares
from rlkit.algos.declared import critic_count, critic_split, needs_critic, token_inputs
from rlkit.config.loader import ConfigError, config_from_dict
from rlkit.runtime.prepare import check_plugins

ESTIMATOR = """
def every_critic(group_sizes, m):
    return [list(range(sum(group_sizes)))] * m

def ensemble(*, rewards, values, mask, gamma=1.0, lam=0.95):
    return values
ensemble.needs_critic = True
ensemble.min_critics = 3
ensemble.default_critics = 3
ensemble.critic_split = every_critic
"""


def _cfg(path, **critic):
    return config_from_dict(
        {
            "model": {"kind": "tiny"},
            "rollout": {"samples_per_prompt": 3},
            "algo": {"advantage": f"{path}:ensemble"},
            "critic": {"enabled": True, **critic},
        }
    )


def test_a_user_estimator_declares_its_critics(tmp_path):
    path = tmp_path / "ens.py"
    path.write_text(ESTIMATOR)
    cfg = _cfg(path)
    assert needs_critic(cfg) and critic_count(cfg) == 3 and token_inputs(cfg) == {}
    assert critic_split(cfg)([2], 3) == [[0, 1]] * 3
    check_plugins(cfg)
    with pytest.raises(ConfigError, match=r"^critic.num_critics: .*>= 3 for"):
        check_plugins(_cfg(path, num_critics=2))
    with pytest.raises(ConfigError, match=r"^critic.enabled: "):
        check_plugins(_cfg(path, enabled=False))


def test_undeclared_estimators_get_the_defaults():
    cfg = config_from_dict({"model": {"kind": "tiny"}})  # grpo
    assert not needs_critic(cfg) and critic_count(cfg) == 1
    assert critic_split(cfg) is disjoint_shares
    level = config_from_dict({"model": {"kind": "tiny"}, "algo": {"advantage": "token_level"}})
    assert token_inputs(level) == {"token_advantages": "token_scores"}
