"""Generative-recommendation rewards (ReRe, arXiv 2510.12211; algorithms.md section 6).

The model writes the next item's title as ``"Title"\\n``. Titles are compared after stripping
whitespace/newlines and one pair of surrounding double quotes; equal titles are the same item
(catalogue duplicates of a title count as the same item).

ReRe's group reward over the G beams o_0..o_{G-1} (beam-score order) for target item y:
    r_acc(o_i)  = 1 if o_i == y else 0
    r_rank(o_i) = 0 if o_i == y or no beam equals y, else -(1/log2(i+2)) / Σ_{j<G} 1/log2(j+2)
    total       = r_acc + r_rank
so wrong items ranked above the target are punished more than wrong items ranked below it.
"""

from __future__ import annotations

import math
from typing import Any

from rlkit.rewards import reward


def normalize_title(text: str) -> str:
    """Strip whitespace/newlines and one pair of surrounding double quotes (``"Title"\\n``)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    return text.strip()


@reward("rec_exact_match")
def exact_match(prompt: str, completion: str, item_title: str, **_: Any) -> float:
    """1.0 if the generated title is the target ``item_title`` (ReRe's r_acc), else 0.0."""
    return float(normalize_title(completion) == normalize_title(item_title))


def rere_rank_penalties(beam_titles: list[str], target: str) -> list[float]:
    """ReRe's r_rank for each beam (0-based rank i = position in ``beam_titles``)."""
    goal = normalize_title(target)
    hits = [normalize_title(t) == goal for t in beam_titles]
    if not any(hits):
        return [0.0] * len(beam_titles)
    norm = sum(1.0 / math.log2(j + 2) for j in range(len(beam_titles)))
    return [0.0 if hit else -(1.0 / math.log2(i + 2)) / norm for i, hit in enumerate(hits)]


def rere_rank_rewards(beam_titles: list[str], target: str) -> list[float]:
    """ReRe's total reward r_acc + r_rank for each beam, in beam order."""
    goal = normalize_title(target)
    penalties = rere_rank_penalties(beam_titles, target)
    return [
        float(normalize_title(t) == goal) + r for t, r in zip(beam_titles, penalties, strict=True)
    ]


@reward("rere", batch=True)
def rere_reward(
    prompts: list[str], completions: list[str], item_title: list[str], **_: Any
) -> list[dict[str, float]]:
    """Batch form for a RewardPool: samples sharing a prompt form one group, in beam order.

    Use it with ``RewardPool.score_batch`` on whole groups ordered by beam score (``submit``
    sees one sample at a time, where a group of one has no ranking signal).
    Components: ``acc`` (r_acc) and ``rank`` (r_rank).
    """
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(prompt, []).append(i)
    out: list[dict[str, float]] = [{} for _ in prompts]
    for idx in groups.values():
        titles = [completions[i] for i in idx]
        target = item_title[idx[0]]
        penalties = rere_rank_penalties(titles, target)
        for i, title, rank in zip(idx, titles, penalties, strict=True):
            acc = float(normalize_title(title) == normalize_title(target))
            out[i] = {"score": acc + rank, "acc": acc, "rank": rank}
    return out


# ---- group-level form for the `constrained_beam` rollout strategy (rlkit.methods.rere.strategy)
def beam_title(completion: str, response_prefix: str = "") -> str:
    """The title of a beam's response text `response_prefix + '"Title"\\n'`."""
    if response_prefix and completion.startswith(response_prefix):
        completion = completion[len(response_prefix) :]
    return normalize_title(completion)


@reward("rere_rule")
def rere_rule(
    prompt: str, completion: str, item_title: str, response_prefix: str = "", **_: Any
) -> float:
    """ReRe's rule reward r_acc(o_i) = 1 if the beam is the target item ``item_title``, else 0."""
    return float(beam_title(completion, response_prefix) == normalize_title(item_title))


@reward("rere_rank", batch=True)
def rere_rank(
    prompts: list[str],
    completions: list[str],
    item_title: list[str],
    rank: list[int],
    response_prefix: str = "",
    **_: Any,
) -> list[float]:
    """ReRe's ranking reward for ONE complete group (reward_scope "group": one call per group,
    each sample's 0-based beam rank in ``rank``), G = the group's size:

        r_rank(o_i) = -(1/log2(i+2)) / Σ_{j<G} 1/log2(j+2)   if o_i is wrong and some beam hit
        r_rank(o_i) = 0                                        otherwise

    (arXiv 2510.12211; docs/algorithms.md §6). Total ReRe reward = rere_rule + rere_rank.
    """
    goal = normalize_title(item_title[0]) if item_title else ""
    hits = [beam_title(c, response_prefix) == goal for c in completions]
    if not any(hits):
        return [0.0] * len(completions)
    norm = sum(1.0 / math.log2(j + 2) for j in range(len(completions)))
    return [0.0 if hit else -(1.0 / math.log2(int(i) + 2)) / norm for i, hit in zip(rank, hits)]


# Recipe names whose metric names are the components: `rewards.rec:rule` -> reward/rule,
# `rewards.rec:rank` -> reward/rank.
rule = rere_rule
rank = rere_rank
