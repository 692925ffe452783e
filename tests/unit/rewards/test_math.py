"""Built-in math rewards: curated (gold, completion, verdict) cases and the boxed extractor."""

from __future__ import annotations

import time

import pytest

from rlkit.rewards.builtin.math import accuracy, boxed_format, extract_boxed, fast_verdict

CASES = [
    ("42", "So the total is \\boxed{42}.", 1.0),
    ("42", "\\boxed{41}", 0.0),
    ("-7", "\\boxed{-7}", 1.0),
    ("0.5", "\\boxed{\\frac{1}{2}}", 1.0),
    ("\\frac{1}{2}", "\\boxed{0.5}", 1.0),
    ("\\frac{1}{2}", "\\boxed{\\frac{1}{3}}", 0.0),
    ("1000", "\\boxed{1,000}", 1.0),
    ("1,000", "\\boxed{1000}", 1.0),
    ("10", "\\boxed{10 \\text{ cm}}", 1.0),
    ("10", "\\boxed{10\\,\\mathrm{cm}}", 1.0),
    ("[1,2)", "\\boxed{[1,2)}", 1.0),
    ("(1,2)", "\\boxed{[1,2]}", 0.0),
    ("(-\\infty, 3]", "\\boxed{(-\\infty,3]}", 1.0),
    ("\\frac{\\sqrt{3}}{2}", "\\boxed{\\dfrac{\\sqrt{3}}{2}}", 1.0),
    ("x^2+1", "\\boxed{1+x^{2}}", 1.0),
    ("4", "\\boxed{3} wait, no: \\boxed{4}", 1.0),
    ("3", "\\boxed{3} wait, no: \\boxed{4}", 0.0),
    ("Natalia sold 48/2 = 24 clips... #### 72", "\\boxed{72}", 1.0),
    ("3", "I think it is 4.", 0.0),
]


@pytest.mark.parametrize("gold, completion, verdict", CASES)
def test_accuracy_curated(gold, completion, verdict):
    assert accuracy("q", completion, answer=gold) == verdict


def test_no_box_without_text_fallback_is_wrong():
    assert accuracy("q", "the answer is 5", answer="5", fallback_to_text=False) == 0.0


@pytest.mark.parametrize(
    "text, boxed",
    [
        ("a \\boxed{\\frac{a}{b}} b", "\\frac{a}{b}"),
        ("\\boxed{ {x}^{2} }", " {x}^{2} "),
        ("\\fbox{5}", "5"),
        ("so $\\boxed 7$", "7"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("\\boxed{1} then \\boxed{2", "1"),  # unclosed last box: previous complete one
        ("no box", None),
        ("\\boxedx{3}", None),
    ],
)
def test_extract_boxed(text, boxed):
    assert extract_boxed(text) == boxed


def test_boxed_format():
    assert boxed_format("q", "x \\boxed{3}") == 1.0
    assert boxed_format("q", "x \\boxed{ }") == 0.0
    assert boxed_format("q", "the answer is 3") == 0.0


def test_integer_fast_path_decides_without_math_verify_and_is_fast():
    assert fast_verdict("12", " 12 ") == 1.0 and fast_verdict("12", "13") == 0.0
    assert fast_verdict("1/2", "0.5") is None
    start = time.perf_counter()
    scores = [accuracy("q", f"work... \\boxed{{{i % 7}}}", answer=str(i % 5)) for i in range(2000)]
    assert time.perf_counter() - start < 0.5
    assert scores[:7] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
