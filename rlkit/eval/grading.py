"""Math answer extraction and equivalence for evaluation (docs/algorithms.md §7).

- Prediction: the content of the LAST `\\boxed{...}` of the completion (balanced braces).
- GSM8K gold: the text after `#### ` (commas removed).
- Equivalence: math-verify `verify(parse(gold), parse(pred))`, gold FIRST (the library's
  argument order; it is not symmetric).

When the project's `rewards.math` is importable, its `extract_boxed` and
`accuracy(prompt, completion, answer=gold, fallback_to_text=False)` are used, so evaluation grades
exactly like the training reward (strict: no boxed answer = wrong). Otherwise the local fallback
below runs: `_extract_boxed`, and math-verify on both sides wrapped as `\\boxed{...}`, or a
normalised string / number comparison when math-verify is missing. `grader_name()` says which.

math-verify's timeouts use `signal.alarm`, which works only in the main thread: grade there (the
CLI does), where a timeout counts as wrong; in other threads grading runs without timeouts.
"""

from __future__ import annotations

import logging
import re
import threading

log = logging.getLogger(__name__)
_warned_thread = False


def _extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` (balanced braces), else None."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        m = re.findall(r"\\boxed ([^\s$]+)", text)  # `\boxed 5` form
        return m[-1] if m else None
    i = starts[-1]
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None  # unbalanced: truncated inside the box


def _shared() -> tuple | None:
    """(extract_boxed, accuracy) of the training reward module `rewards.math`, if importable."""
    try:
        from rewards.math import accuracy, extract_boxed
    except ImportError:
        return None
    return extract_boxed, accuracy


def extract_answer(text: str) -> str | None:
    """The predicted answer of a completion: last boxed content (shared extractor if present)."""
    shared = _shared()
    return shared[0](text) if shared else _extract_boxed(text)


def grade(gold: str, completion: str) -> tuple[str | None, bool]:
    """(extracted answer, correct) of one completion against the gold answer."""
    shared = _shared()
    if shared is None:
        pred = _extract_boxed(completion)
        return pred, is_equivalent(gold, pred)
    pred = shared[0](completion)
    if pred is None:
        return None, False
    return pred, shared[1]("", completion, answer=gold, fallback_to_text=False) == 1.0


def gsm8k_gold(answer_field: str) -> str | None:
    """GSM8K gold: the text after the last `#### ` with thousands separators removed."""
    if "####" not in answer_field:
        return None
    return answer_field.rsplit("####", 1)[1].strip().replace(",", "")


def grader_name() -> str:
    """Which grader runs: the shared reward, local math-verify, or the string fallback."""
    if _shared() is not None:
        return "rewards.math.accuracy"
    try:
        import math_verify  # noqa: F401
    except ImportError:
        return "normalised-string"
    return "math-verify"


def is_equivalent(gold: str, pred: str | None) -> bool:
    """Local fallback: `pred` equals `gold` mathematically (math-verify) or after normalising."""
    if pred is None or not str(pred).strip():
        return False
    try:
        from math_verify import parse, verify
    except ImportError:
        return _normalise(gold) == _normalise(pred)
    timeout = _timeout_seconds()
    g = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout)
    p = parse(f"\\boxed{{{pred}}}", parsing_timeout=timeout)
    if not g or not p:
        return _normalise(gold) == _normalise(pred)
    return bool(verify(g, p, timeout_seconds=timeout))


def _timeout_seconds() -> int | None:
    """5 s in the main thread (signal.alarm works there), None elsewhere (warned once)."""
    global _warned_thread
    if threading.current_thread() is threading.main_thread():
        return 5
    if not _warned_thread:
        log.warning("math grading outside the main thread: math-verify timeouts are disabled")
        _warned_thread = True
    return None


def _normalise(ans: str) -> str:
    """A light canonical form: no spaces/$/\\text/\\left/\\right, dfrac->frac, numbers as floats."""
    s = str(ans).strip()
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac")):
        s = s.replace(a, b)
    s = re.sub(r"[\s$]|\\!|\\,", "", s).rstrip(".")
    num = s.replace(",", "")
    try:
        return repr(float(num))
    except ValueError:
        return s
