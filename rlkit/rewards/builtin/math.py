"""Math rewards: answer accuracy with math-verify, the ``\\boxed{}`` extractor and a format reward.

Conventions (algorithms.md section 7): the prediction is the last ``\\boxed{...}`` (or ``\\fbox``)
of the completion; equivalence is ``verify(parse(gold), parse(pred))`` of math-verify 0.9.0, gold
first (it is not symmetric). math-verify's own timeout uses ``signal.alarm``, which only works in
a process's main thread: there (e.g. in a RewardPool worker process) it is kept, elsewhere
(thread mode) it is switched off (``parsing_timeout=None``, ``timeout_seconds=None``) and the pool's
timeout applies. A math-verify timeout counts as wrong (0.0).

Fast path: the quickstart task has integer answers; when the boxed text and the gold are equal
after light normalisation, or both are plain integers, the verdict needs no math-verify at all.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from rlkit.rewards.registry import reward

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_INT = re.compile(r"[+-]?\d+")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
_SPACING = re.compile(r"\\[!,;: ]|\s+")


def _match_braces(text: str, open_at: int) -> str | None:
    """Content of the ``{...}`` group opening at ``open_at`` (escaped ``\\{ \\}`` skipped)."""
    depth, i = 0, open_at
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
        i += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces kept).

    Also accepts the brace-less form ``\\boxed 5``. An unclosed last box (a truncated response)
    is skipped in favour of the previous complete one. None when there is no box.
    """
    for match in reversed(list(_BOX.finditer(text))):
        i = match.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            content = _match_braces(text, i)
            if content is not None:
                return content
        elif i > match.end():  # "\boxed 5": one token up to whitespace or "$"
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


def _normalize(text: str) -> str:
    text = _SPACING.sub("", text.strip().strip("$"))
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    return text


def gold_text(answer: Any) -> str:
    """A row's gold answer as text: GSM8K solutions give the text after their last "####"."""
    gold = str(answer).strip()
    if "####" in gold:  # GSM8K solution strings: the answer follows the last "####"
        gold = gold.rsplit("####", 1)[1].strip()
    return gold


def fast_verdict(gold: str, pred: str) -> float | None:
    """1.0/0.0 when decidable without math-verify (equal strings, or two integers), else None."""
    g, p = _normalize(gold), _normalize(pred)
    if g == p and g:
        return 1.0
    if _INT.fullmatch(g) and _INT.fullmatch(p):
        return float(int(g) == int(p))
    return None


def _import_math_verify() -> None:
    """Worker warm-up: pay math-verify's (sympy) import before the first timed call."""
    import math_verify  # noqa: F401


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def math_verify_equal(gold: str, pred_text: str, timeout_s: int = 5) -> bool:
    """``verify(parse(gold), parse(pred))`` with timeouts only where ``signal.alarm`` works."""
    from math_verify import parse, verify

    limit = timeout_s if _in_main_thread() else None
    if "$" not in gold and "\\boxed" not in gold:
        gold = f"${gold}$"  # math-verify's LaTeX extraction needs delimiters
    gold_parsed = parse(gold, parsing_timeout=limit)
    pred_parsed = parse(pred_text, parsing_timeout=limit)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=limit))


@reward("math_accuracy", warmup=_import_math_verify)
def accuracy(
    prompt: str,
    completion: str,
    answer: Any,
    fallback_to_text: bool = True,
    mv_timeout_s: int = 5,
    **_: Any,
) -> float:
    """1.0 if the completion's final answer equals the ``answer`` field, else 0.0.

    The prediction is the last boxed answer; without one, math-verify extracts the answer from
    the whole text when ``fallback_to_text`` (its own priorities: boxed, "final answer is",
    last expression), else the score is 0.0.
    """
    gold = gold_text(answer)
    pred = extract_boxed(completion)
    if pred is not None:
        verdict = fast_verdict(gold, pred)
        if verdict is not None:
            return verdict
        pred_text = f"\\boxed{{{pred}}}"
    elif fallback_to_text:
        pred_text = completion
    else:
        return 0.0
    return float(math_verify_equal(gold, pred_text, mv_timeout_s))


@reward("boxed_format")
def boxed_format(prompt: str, completion: str, **_: Any) -> float:
    """Format reward: 1.0 if the completion has a non-empty ``\\boxed{}`` answer, else 0.0."""
    pred = extract_boxed(completion)
    return float(bool(pred and pred.strip()))
