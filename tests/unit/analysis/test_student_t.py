"""The t quantile that replaces scipy: against closed forms and table values."""

from __future__ import annotations

import math

import pytest

from rlkit.analysis.student_t import incomplete_beta, t_quantile, t_upper_tail


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5, 12.7])
def test_tail_matches_the_closed_forms_for_one_two_and_three_dof(t):
    cauchy = 0.5 - math.atan(t) / math.pi  # ν = 1
    two = 0.5 * (1 - t / math.sqrt(2 + t * t))  # ν = 2
    three = 0.5 - (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi
    assert t_upper_tail(t, 1) == pytest.approx(cauchy, rel=1e-12)
    assert t_upper_tail(t, 2) == pytest.approx(two, rel=1e-12)
    assert t_upper_tail(t, 3) == pytest.approx(three, rel=1e-12)
    assert t_upper_tail(-t, 2) == pytest.approx(1 - two, rel=1e-12)


def test_incomplete_beta_closed_forms():
    # I_x(a, 1) = x^a and I_x(1, b) = 1 − (1 − x)^b
    assert incomplete_beta(0.3, 2.5, 1.0) == pytest.approx(0.3**2.5, rel=1e-12)
    assert incomplete_beta(0.8, 1.0, 3.0) == pytest.approx(1 - 0.2**3, rel=1e-12)
    assert incomplete_beta(0.0, 2.0, 2.0) == 0.0 and incomplete_beta(1.0, 2.0, 2.0) == 1.0


def test_quantile_975_against_closed_form_and_tables():
    # ν = 2: F(t) = ½ + t / (2√(2 + t²))  =>  t = √(2 / (4p(1 − p)) − 2)
    exact_two = math.sqrt(2 / (4 * 0.975 * 0.025) - 2)
    assert t_quantile(0.975, 2) == pytest.approx(exact_two, rel=1e-12)
    assert t_quantile(0.975, 2) == pytest.approx(4.302652729911275, rel=1e-9)  # scipy's value
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-12)
    for dof, table in [(4, 2.7764451051977934), (9, 2.2621571627409915), (30, 2.0422724563012373)]:
        assert t_quantile(0.975, dof) == pytest.approx(table, rel=1e-10)
    assert t_quantile(0.025, 4) == pytest.approx(-2.7764451051977934, rel=1e-10)


def test_fractional_dof_lies_between_its_integer_neighbours():
    q = t_quantile(0.975, 216 / 53)
    assert t_quantile(0.975, 5) < q < t_quantile(0.975, 4)
    assert t_upper_tail(q, 216 / 53) == pytest.approx(0.025, rel=1e-10)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_quantile(0.9, 0)
