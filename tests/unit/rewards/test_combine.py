"""Output normalisation and the weighted combination of several reward functions."""

from __future__ import annotations

import math

import pytest

from rlkit.rewards import RewardOutputError, RewardSpec, normalize_output
from rlkit.rewards.combine import Part, combine


def test_normalize_number_and_dict():
    assert normalize_output(True)["score"] == 1.0
    out = normalize_output({"score": 2, "acc": 1, "token_scores": [1, 0]})
    assert out == {"score": 2.0, "components": {"acc": 1.0}, "token_scores": [1.0, 0.0]}


@pytest.mark.parametrize("bad", [{"acc": 1.0}, "1.0x", None, math.nan, {"score": 1, "x": "y"}])
def test_normalize_rejects_non_rewards(bad):
    with pytest.raises(RewardOutputError):
        normalize_output(bad)


def test_weighted_sum_components_and_token_scores():
    parts = [
        Part(True, normalize_output({"score": 1.0, "fmt": 0.5, "token_scores": [1.0, 2.0]})),
        Part(True, normalize_output(0.25)),
        Part(True, normalize_output({"score": 0.0, "token_scores": [4.0, 4.0]})),
    ]
    res = combine(["a", "b", "c"], [2.0, 4.0, 0.5], parts, fallback=0.0)
    assert res.score == pytest.approx(2.0 * 1.0 + 4.0 * 0.25 + 0.0)
    assert res.components == {"a": 1.0, "a/fmt": 0.5, "b": 0.25, "c": 0.0}
    assert res.token_scores == pytest.approx([2.0 + 2.0, 4.0 + 2.0])
    assert not res.failed and res.error is None


def test_failed_part_contributes_weighted_fallback():
    parts = [Part(True, normalize_output(1.0)), Part(False, None, "Timeout: too slow\ntrace")]
    res = combine(["ok", "slow"], [1.0, 3.0], parts, fallback=-0.5)
    assert res.score == pytest.approx(1.0 + 3.0 * -0.5)
    assert res.failed and res.error == "slow: Timeout: too slow"
    assert res.components["slow"] == -0.5


def test_token_scores_of_different_lengths_are_an_error():
    parts = [
        Part(True, normalize_output({"score": 1.0, "token_scores": [1.0]})),
        Part(True, normalize_output({"score": 1.0, "token_scores": [1.0, 1.0]})),
    ]
    res = combine(["a", "b"], [1.0, 1.0], parts, fallback=0.0)
    assert res.failed and res.token_scores is None and res.score == 2.0


def test_spec_coerce_from_recipe_dict():
    spec = RewardSpec.coerce({"fn": "rewards.math:accuracy", "weight": 0.1, "kwargs": {"a": 1}})
    assert spec == RewardSpec("rewards.math:accuracy", 0.1, None, {"a": 1})
    with pytest.raises(ValueError, match="expected keys"):
        RewardSpec.coerce({"fn": "x", "wieght": 1})
