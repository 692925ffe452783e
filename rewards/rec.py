"""Generative-recommendation rewards (ReRe): the shipped ones live with their method.

The code is `rlkit/methods/rere/rewards.py` (ReRe, arXiv 2510.12211; docs/rere.md); this module
keeps the recipe names `rewards.rec:rule` / `rewards.rec:rank` (logged as reward/rule and
reward/rank) and `rewards.rec:exact_match` / `rewards.rec:rere_reward` working.  To write your
own reward, copy the shape of any function there into a file of your own (docs/rewards.md).
"""

from rlkit.methods.rere.rewards import (
    exact_match,
    normalize_title,
    rank,
    rere_rank,
    rere_rank_penalties,
    rere_rank_rewards,
    rere_reward,
    rere_rule,
    rule,
)

__all__ = [
    "exact_match",
    "normalize_title",
    "rank",
    "rere_rank",
    "rere_rank_penalties",
    "rere_rank_rewards",
    "rere_reward",
    "rere_rule",
    "rule",
]
