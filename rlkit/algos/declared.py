"""What a recipe's advantage estimator declares it needs, read from attributes on the registered
function (the way `credit_stages` names its credit stages), so that no layer names a method:

    needs_critic: bool        reads critic values (`gae`, `asyppo`); critic.enabled must match
    min_critics: int          the fewest critics it works with (AsyPPO's σ needs 2)
    default_critics: int      M when `critic.num_critics` is 0 (auto); 1 when undeclared
    critic_split: fn          (group sizes, M) -> each critic's sample indices; default
                              rlkit.algos.critic.disjoint_shares
    token_inputs: {kw: name}  per-token inputs the advantage stage hands it, e.g. `token_level`:
                              {"token_advantages": "token_scores"} (the rewards' process scores)
    credit_stages: (names)    credit stages that must run before it (rlkit.credit.pipeline)

Reading them loads the estimator (a registered name or a `module:function` path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlkit.algos.critic import disjoint_shares
from rlkit.algos.registry import ADVANTAGES


def estimator(cfg: Any) -> Callable[..., Any]:
    """The recipe's advantage estimator (`algo.advantage`)."""
    return ADVANTAGES[cfg.algo.advantage]


def needs_critic(cfg: Any) -> bool:
    return bool(getattr(estimator(cfg), "needs_critic", False))


def min_critics(cfg: Any) -> int:
    return int(getattr(estimator(cfg), "min_critics", 1))


def critic_count(cfg: Any) -> int:
    """M: `critic.num_critics`, or when 0 (auto) the estimator's `default_critics` (else 1)."""
    n = cfg.critic.num_critics
    return n if n else int(getattr(estimator(cfg), "default_critics", 1))


def critic_split(cfg: Any) -> Callable[[list[int], int], list[list[int]]]:
    """How each step's samples are shared among the critics (see module docstring)."""
    return getattr(estimator(cfg), "critic_split", disjoint_shares)


def token_inputs(cfg: Any) -> dict[str, str]:
    """{estimator keyword: per-token input} the advantage stage must supply."""
    return dict(getattr(estimator(cfg), "token_inputs", {}))
