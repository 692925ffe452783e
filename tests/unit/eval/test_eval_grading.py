"""Math grading: last boxed answer, GSM8K gold, the training reward's equivalence (gold first)."""

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


@pytest.mark.parametrize("gold, completion, pred, correct", CASES)
def test_grade(gold, completion, pred, correct):
    pytest.importorskip("math_verify")
    got_pred, got_correct = grading.grade(gold, completion)
    assert got_pred == pred
    assert got_correct is correct


def test_grade_is_the_training_reward(monkeypatch):
    """Evaluation calls the reward `math_accuracy` (strict: no text fallback), not a copy."""
    pytest.importorskip("math_verify")
    calls = []

    def fake_accuracy(prompt, completion, answer, fallback_to_text):
        calls.append((completion, answer, fallback_to_text))
        return 1.0

    monkeypatch.setattr(grading, "accuracy", fake_accuracy)
    assert grading.grade("7", "\\boxed{8}") == ("8", True)
    assert calls == [("\\boxed{8}", "7", False)]
    assert grading.grader_name() == "math_accuracy"


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
    monkeypatch.setattr(grading, "_has_math_verify", lambda: False)

    def no_reward(*a, **k):
        raise AssertionError("the reward needs math-verify; the fallback must not call it")

    monkeypatch.setattr(grading, "accuracy", no_reward)
    assert grading.grader_name() == "normalised-string"
    assert grading.grade("1,000", "so \\boxed{1000.0}") == ("1000.0", True)
    assert grading.grade("3", "\\boxed{4}") == ("4", False)
    assert grading.is_equivalent("1,000", "1000.0")
    assert grading.is_equivalent("\\frac{1}{2}", "\\dfrac{1}{2}")
    assert not grading.is_equivalent("3", "4")
