"""Checking a final answer against the row's `answer` (shared by the shipped environments)."""

from __future__ import annotations

import re
from typing import Any

from rlkit.rewards.builtin.math import extract_boxed

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def final_number(text: str) -> str | None:
    """The boxed answer if there is one, else the last number in `text`."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed.strip()
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def same_number(pred: str | None, gold: Any) -> bool:
    try:
        return pred is not None and abs(float(pred) - float(str(gold))) < 1e-6
    except ValueError:
        return False
