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
