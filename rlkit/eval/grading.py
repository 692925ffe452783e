"""Math answer grading for evaluation, the same as the training reward (docs/evaluation.md).

- Prediction: the content of the last `\\boxed{...}` of the completion
  (`rlkit.rewards.builtin.math.extract_boxed`); no box = wrong (strict).
- GSM8K gold: the text after the last `#### ` (commas removed).
- Equivalence: the training reward `math_accuracy` itself
  (`accuracy(prompt, completion, answer=gold, fallback_to_text=False)`), i.e. math-verify
  `verify(parse(gold), parse(pred))`, gold FIRST (it is not symmetric), after a fast path for
  equal strings and integers; so evaluation grades exactly like training.  Without math-verify
  installed (it is in the cpu/gpu extras only) a normalised string / number comparison runs
  instead.  `grader_name()` says which.

math-verify's timeouts use `signal.alarm`, which works only in the main thread: grade there (the
CLI does), where a timeout counts as wrong; in other threads grading runs without timeouts.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading

from rlkit.rewards.builtin.math import accuracy, extract_boxed

log = logging.getLogger(__name__)
_warned_thread = False


def grade(gold: str, completion: str) -> tuple[str | None, bool]:
    """(extracted answer, correct) of one completion against the gold answer."""
    pred = extract_boxed(completion)
    if pred is None:
        return None, False
    if not _has_math_verify():
        return pred, is_equivalent(gold, pred)
    _warn_outside_main_thread()
    return pred, accuracy("", completion, answer=gold, fallback_to_text=False) == 1.0


def is_equivalent(gold: str, pred: str | None) -> bool:
    """`pred` (an extracted answer) equals `gold`: as the reward grades `\\boxed{pred}` when
    math-verify is installed, else after normalising both (`_normalise`)."""
    if pred is None or not str(pred).strip():
        return False
    if not _has_math_verify():
        return _normalise(gold) == _normalise(pred)
    _warn_outside_main_thread()
    return accuracy("", f"\\boxed{{{pred}}}", answer=gold, fallback_to_text=False) == 1.0


def gsm8k_gold(answer_field: str) -> str | None:
    """GSM8K gold: the text after the last `#### ` with thousands separators removed."""
    if "####" not in answer_field:
        return None
    return answer_field.rsplit("####", 1)[1].strip().replace(",", "")


def grader_name() -> str:
    """Which grader runs: the training reward (math-verify) or the string fallback."""
    return "math_accuracy" if _has_math_verify() else "normalised-string"


def _has_math_verify() -> bool:
    try:
        return importlib.util.find_spec("math_verify") is not None
    except (ImportError, ValueError):
        return False


def _warn_outside_main_thread() -> None:
    """The reward drops math-verify's timeouts outside the main thread; say so once."""
    global _warned_thread
    if threading.current_thread() is not threading.main_thread() and not _warned_thread:
        log.warning("math grading outside the main thread: math-verify timeouts are disabled")
        _warned_thread = True


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
