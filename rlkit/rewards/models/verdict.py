"""Judge prompts and verdicts: the pure arithmetic of model rewards (no torch, no engine).

A judge reads a prompt rendered from a template and gives a verdict in one of two ways:

* ``logprob``: the next-token log-probabilities of two verdict tokens (positive first, e.g.
  ``" Yes"``, ``" No"``) give ``P(yes) / (P(yes) + P(no)) = sigmoid(lp_yes - lp_no)``, the
  verdict probability normalised over the two tokens (the "P(Yes) normalised over {Yes, No}"
  reading of LLM-as-judge and GenRM, e.g. Zhang et al. 2024, "Generative Verifiers").
* ``regex``: the judge generates text; the first match of a regex gives the verdict: its first
  group read as a number, or 1/0 when it equals the positive/negative verdict token.  No match
  (or an unreadable group) is a *parse failure*, scored with the fallback and counted.
"""

from __future__ import annotations

import math
import re
from typing import Any

DEFAULT_JUDGE_TEMPLATE = (
    "Question: {prompt}\nResponse: {response}\nIs the response correct? Answer Yes or No.\nVerdict:"
)
DEFAULT_CLASSIFIER_TEMPLATE = "{prompt}{response}"
PLACEHOLDERS = ("{prompt}", "{response}", "{answer}")


def render(template: str, item: dict[str, Any]) -> str:
    """The template with ``{prompt}``, ``{response}`` and ``{answer}`` replaced.

    Plain replacement, not ``str.format``: prompts hold LaTeX braces (``\\boxed{}``).  A missing
    ``answer`` renders as an empty string."""
    out = template
    for key in ("prompt", "response", "answer"):
        out = out.replace("{" + key + "}", str(item.get(key) or ""))
    return out


def verdict_probability(lp_yes: float, lp_no: float) -> float:
    """``P(yes) / (P(yes) + P(no))`` from the two log-probabilities (numerically stable)."""
    d = lp_yes - lp_no
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


def parse_verdict(text: str, pattern: re.Pattern[str], tokens: tuple[str, str]) -> float | None:
    """The verdict in generated ``text`` (None: a parse failure).

    The first match's group 1 (or the whole match without groups): equal to the positive or
    negative verdict token (stripped, case-insensitive) -> 1.0 / 0.0; else read as a float."""
    m = pattern.search(text)
    if m is None:
        return None
    raw = (m.group(1) if pattern.groups else m.group(0)).strip()
    yes, no = (t.strip().lower() for t in tokens)
    if raw.lower() == yes:
        return 1.0
    if raw.lower() == no:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def as_item(value: Any) -> dict[str, Any]:
    """One request item from what a reward passes to ``score``: a response text, a
    ``(prompt, response)`` or ``(prompt, response, answer)`` tuple, or a dict with ``response``."""
    if isinstance(value, str):
        return {"prompt": "", "response": value}
    if isinstance(value, dict):
        if "response" not in value:
            raise ValueError(f"a scoring item dict needs 'response', got keys {sorted(value)}")
        return {k: value.get(k) for k in ("prompt", "response", "answer") if k in value}
    if isinstance(value, (tuple, list)) and len(value) in (2, 3):
        item = {"prompt": str(value[0]), "response": str(value[1])}
        if len(value) == 3:
            item["answer"] = value[2]
        return item
    raise ValueError(
        "score() takes response texts, (prompt, response[, answer]) tuples or dicts, got "
        f"{type(value).__name__}"
    )
