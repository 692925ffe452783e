"""Format rewards for tagged reasoning (DeepSeek-R1 style ``<think>..</think><answer>..</answer>``).

R1-Zero's format reward (DeepSeek-R1 report, section 2.2.2) checks that the reasoning sits in
think tags and the answer in answer tags; this is the usual regex form of it.
"""

from __future__ import annotations

import re
from typing import Any

from rlkit.rewards.registry import reward

_THINK_ANSWER = re.compile(r"\s*<think>.+?</think>\s*<answer>.+?</answer>\s*", re.DOTALL)


@reward("think_answer_format")
def think_answer_format(
    prompt: str, completion: str, think_opened_in_prompt: bool = False, **_: Any
) -> float:
    """1.0 if the completion is exactly ``<think>…</think> <answer>…</answer>``, else 0.0.

    Each tag must occur once and both parts be non-empty. ``think_opened_in_prompt``: the chat
    template already wrote ``<think>`` at the end of the prompt, so the completion starts inside.
    """
    text = "<think>" + completion if think_opened_in_prompt else completion
    if any(text.count(tag) != 1 for tag in ("<think>", "</think>", "<answer>", "</answer>")):
        return 0.0
    return float(_THINK_ANSWER.fullmatch(text) is not None)


@reward("think_closed_format")
def think_closed_format(prompt: str, completion: str, **_: Any) -> float:
    """1.0 if a thinking model closed its reasoning (one ``</think>``) and wrote text after it."""
    if completion.count("</think>") != 1:
        return 0.0
    return float(bool(completion.split("</think>", 1)[1].strip()))
