"""Built-in format and length rewards (rlkit.rewards.builtin.format, .length)."""

from __future__ import annotations

import pytest

from rlkit.rewards.builtin.format import think_answer_format, think_closed_format
from rlkit.rewards.builtin.length import overlong_penalty, soft_overlong


@pytest.mark.parametrize(
    "completion, verdict",
    [
        ("<think>reason</think>\n<answer>4</answer>", 1.0),
        ("  <think>a\nb</think><answer>4</answer>\n", 1.0),
        ("<think>reason</think>", 0.0),
        ("<think></think><answer>4</answer>", 0.0),
        ("<think>a</think><answer>4</answer><answer>5</answer>", 0.0),
        ("<answer>4</answer><think>a</think>", 0.0),
    ],
)
def test_think_answer_format(completion, verdict):
    assert think_answer_format("q", completion) == verdict


def test_think_opened_in_prompt_and_closed_format():
    assert think_answer_format("q", "r</think><answer>1</answer>", think_opened_in_prompt=True)
    assert think_closed_format("q", "reasoning</think> 42") == 1.0
    assert think_closed_format("q", "reasoning without end") == 0.0


# L_max = 100, L_cache = 20: soft zone (80, 100], linear from 0 to -1 => (80 - L) / 20
@pytest.mark.parametrize(
    "length, expected", [(80, 0.0), (90, -0.5), (95, -0.75), (100, -1.0), (101, -1.0)]
)
def test_overlong_penalty_dapo(length, expected):
    assert overlong_penalty("q", "x" * length, max_len=100, cache_len=20) == pytest.approx(expected)
    words = " ".join(["w"] * length)
    got = overlong_penalty("q", words, max_len=100, cache_len=20, unit="words")
    assert got == pytest.approx(expected)


def test_overlong_penalty_prefers_the_token_count():
    assert overlong_penalty("q", "short", max_len=100, cache_len=20, num_tokens=120) == -1.0
    assert overlong_penalty("q", "x" * 500, max_len=100, cache_len=20, num_tokens=10) == 0.0


@pytest.mark.parametrize("max_len, cache_len", [(100, 0), (100, 101)])
def test_soft_overlong_rejects_a_bad_buffer(max_len, cache_len):
    with pytest.raises(ValueError, match="cache_len"):
        soft_overlong(50, max_len, cache_len)
