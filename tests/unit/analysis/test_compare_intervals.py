"""Group intervals and Welch's difference interval against values computed by hand."""

from __future__ import annotations

import math

import pytest

from rlkit.analysis.compare import curve, final_value, summarize
from rlkit.analysis.intervals import difference_interval, mean_interval, welch_dof

T2 = math.sqrt(2 / (4 * 0.975 * 0.025) - 2)  # t_{0.975, 2} = 4.30265..., closed form for ν = 2
T4 = 2.7764451051977934  # t_{0.975, 4}, tables


def test_three_values_give_the_student_t_interval():
    # [1, 2, 3]: mean 2, s = 1, half-width t_{0.975,2} · 1/√3
    iv = mean_interval([1.0, 2.0, 3.0])
    half = T2 / math.sqrt(3)
    assert iv.mean == 2.0
    assert iv.lo == pytest.approx(2 - half, rel=1e-12) and iv.hi == pytest.approx(2 + half)
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3), rel=1e-9)


def test_a_single_run_has_a_point_interval():
    iv = mean_interval([0.7])
    assert (iv.mean, iv.lo, iv.hi) == (0.7, 0.7, 0.7)


def test_welch_with_equal_spread_has_pooled_dof():
    # a = [1,2,3], b = [4,5,6]: s² = 1 each, n = 3; se² = 2/3, ν = (2/3)² / (2 · (1/3)²/2) = 4
    assert welch_dof(1.0, 3, 1.0, 3) == pytest.approx(4.0)
    iv = difference_interval([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    half = T4 * math.sqrt(2 / 3)
    assert iv.mean == 3.0  # second minus first
    assert (iv.lo, iv.hi) == (pytest.approx(3 - half), pytest.approx(3 + half))


def test_welch_dof_with_unequal_spread():
    # s_a² = 1, n_a = 3; s_b² = 20/3, n_b = 4: ν = 2² / ((1/3)²/2 + (5/3)²/3) = 216/53
    assert welch_dof(1.0, 3, 20 / 3, 4) == pytest.approx(216 / 53)
    iv = difference_interval([1.0, 2.0, 3.0], [4.0, 6.0, 8.0, 10.0])
    assert iv.mean == 5.0
    assert iv.hi - iv.mean == pytest.approx(iv.mean - iv.lo)
    assert T4 * math.sqrt(2) > iv.hi - iv.mean > 2.5706 * math.sqrt(2)  # between ν = 4 and 5


def test_welch_with_a_single_run_group_uses_the_other_spread_only():
    # a = [5] (variance taken as 0), b = [1,2,3]: d = −3, se² = 1/3, ν = 2
    iv = difference_interval([5.0], [1.0, 2.0, 3.0])
    half = T2 / math.sqrt(3)
    assert iv.mean == -3.0
    assert (iv.lo, iv.hi) == (pytest.approx(-3 - half), pytest.approx(-3 + half))


def test_two_single_runs_give_a_point_difference():
    iv = difference_interval([0.25], [0.5])
    assert (iv.mean, iv.lo, iv.hi) == (0.25, 0.25, 0.25)


def test_final_value_is_the_mean_of_the_last_k_logged_steps():
    series = [(s, float(s)) for s in range(1, 9)]  # values 1..8
    assert final_value(series, 5) == pytest.approx(6.0)  # mean of 4..8
    assert final_value(series, 1) == 8.0
    assert final_value(series[:2], 5) == 1.5  # fewer steps than K: all of them
    with pytest.raises(ValueError):
        final_value(series, 0)


def test_summarize_two_groups():
    def run(final: float) -> list[tuple[int, float]]:
        return [(1, 0.0), (2, final)]

    out = summarize("acc", {"grpo": [run(1), run(2), run(3)], "vps": [run(4), run(5), run(6)]}, 1)
    assert out["metric"] == "acc"
    assert [(g["name"], g["n"], g["mean"]) for g in out["groups"]] == [
        ("grpo", 3, 2.0),
        ("vps", 3, 5.0),
    ]
    assert out["groups"][0]["ci95"] == [
        pytest.approx(2 - T2 / math.sqrt(3)),
        pytest.approx(2 + T2 / math.sqrt(3)),
    ]
    half = T4 * math.sqrt(2 / 3)
    assert out["difference"] == {
        "mean": 3.0,
        "ci95": [pytest.approx(3 - half), pytest.approx(3 + half)],
    }


def test_difference_only_for_exactly_two_groups():
    one = {"a": [[(1, 1.0)]]}
    three = {"a": [[(1, 1.0)]], "b": [[(1, 2.0)]], "c": [[(1, 3.0)]]}
    assert summarize("m", one, 5)["difference"] is None
    assert summarize("m", three, 5)["difference"] is None
    assert len(summarize("m", three, 5)["groups"]) == 3


def test_curve_is_mean_and_interval_per_step():
    c = curve([[(1, 1.0), (2, 1.0)], [(1, 2.0), (2, 3.0)], [(1, 3.0)]])
    assert c.steps == [1, 2]
    assert c.mean == [2.0, 2.0]
    assert c.lo[0] == pytest.approx(2 - T2 / math.sqrt(3))
    # step 2: [1, 3], s = √2, n = 2: half = t_{0.975,1} · √2/√2 = tan(0.475π)
    assert c.hi[1] - 2.0 == pytest.approx(math.tan(math.pi * 0.475))
