"""Math grading: last boxed answer, GSM8K gold, math-verify equivalence (gold first)."""

from __future__ import annotations

import threading

import pytest

from rlkit.eval import grading

CASES = [
    ("\\frac{1}{2}", "so \\boxed{1} wait, no: \\boxed{\\dfrac{1}{2}}", "\\dfrac{1}{2}", True),
    ("1234", "\\boxed{1234}", "1234", True),
    ("7", "\\boxed{8}", "8", False),
    ("10", "the answer is 10", None, False),  # no box: wrong (strict)
    ("2", "\\boxed{\\frac{4}{2}}", "\\frac{4}{2}", True),
    ("\\sqrt{2}", "\\boxed{\\sqrt{2}}", "\\sqrt{2}", True),
    ("5", "\\boxed{5", None, False),  # truncated inside the box
]


@pytest.fixture(params=["shared", "local"])
def grader(request, monkeypatch):
    """Run every case through the shared reward (if present) and through the local fallback."""
    if request.param == "local":
        monkeypatch.setattr(grading, "_shared", lambda: None)
    elif grading._shared() is None:
        pytest.skip("rewards.math is not available")
    return grading


@pytest.mark.parametrize("gold, completion, pred, correct", CASES)
def test_grade(grader, gold, completion, pred, correct):
    pytest.importorskip("math_verify")
    got_pred, got_correct = grader.grade(gold, completion)
    assert got_pred == pred
    assert got_correct is correct


def test_gsm8k_gold():
    assert grading.gsm8k_gold("a\nb\n#### 1,234") == "1234"
    assert grading.gsm8k_gold("#### 7") == "7"
    assert grading.gsm8k_gold("no marker") is None


def test_grading_outside_main_thread_does_not_raise():
    pytest.importorskip("math_verify")
    out = {}

    def work():
        out["v"] = grading.is_equivalent("\\frac{1}{2}", "0.5")

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert out["v"] is True


def test_normalised_fallback_without_math_verify(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_math_verify(name, *a, **k):
        if name.startswith("math_verify"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_math_verify)
    monkeypatch.setattr(grading, "_shared", lambda: None)
    assert grading.grader_name() == "normalised-string"
    assert grading.is_equivalent("1,000", "1000.0")
    assert grading.is_equivalent("\\frac{1}{2}", "\\dfrac{1}{2}")
    assert not grading.is_equivalent("3", "4")
