"""Rewards that ask the recipe's reward models (`reward.models`, docs/rewards.md "Model
rewards"): ``ctx.models[name].score(...)`` blocks until the model's gateway answers, batched
with every other reward process's requests.

    judge_verdict   a judge's verdict probability for one response (the row's `answer`, when it
                    has one, fills the template's {answer})
    rm_score        a classifier reward model's scalar score for one response
    judge_group     group scope: one judge call for the whole group (a batch function), e.g.
                    for listwise judging or to save round trips
"""

from __future__ import annotations

from typing import Any

from rlkit.rewards.registry import reward


def _item(prompt: str, completion: str, answer: Any) -> tuple:
    return (prompt, completion) if answer is None else (prompt, completion, str(answer))


@reward("judge_verdict")
def judge_verdict(prompt: str, completion: str, ctx: Any, answer: Any = None,
                  model: str = "judge") -> float:  # fmt: skip
    """P(yes) / (P(yes) + P(no)) of judge `model` (or its regex verdict) for this response."""
    [score] = ctx.models[model].score([_item(prompt, completion, answer)])
    return score


@reward("rm_score")
def rm_score(prompt: str, completion: str, ctx: Any, model: str = "rm") -> float:
    """The scalar score of classifier reward model `model`."""
    [score] = ctx.models[model].score([(prompt, completion)])
    return score


@reward("judge_group", batch=True)
def judge_group(prompts: list[str], completions: list[str], ctx: Any,
                answer: list[Any] | None = None, model: str = "judge") -> list[float]:  # fmt: skip
    """Every response of the call (a whole group under group-scope strategies) in one request."""
    answers = answer if answer is not None else [None] * len(prompts)
    items = [_item(p, c, a) for p, c, a in zip(prompts, completions, answers, strict=True)]
    return ctx.models[model].score(items)
