"""Checking a final answer against the row's `answer` (shared by the shipped environments)."""

from __future__ import annotations

import re
from typing import Any

from rlkit.rewards.builtin.math import extract_boxed, gold_text

_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")  # 1,234.5 whole


def final_number(text: str) -> str | None:
    """The boxed answer if there is one, else the last number in `text`."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed.strip()
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def same_number(pred: str | None, gold: Any) -> bool:
    """`pred` equals the row's gold number (a GSM8K solution's is after its "####"; thousands
    separators ignored)."""
    if pred is None:
        return False
    try:
        want = float(gold_text(gold).replace(",", ""))
        return abs(float(pred.replace(",", "")) - want) < 1e-6
    except ValueError:
        return False
