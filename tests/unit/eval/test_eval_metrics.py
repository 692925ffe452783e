"""pass@k against its closed form and brute force; HR/NDCG against hand-computed cases."""

from __future__ import annotations

import itertools
import math

import pytest

from rlkit.eval.metrics import (
    first_rank,
    math_metrics,
    mean_pass_at_k,
    pass_at_k,
    pass_k_values,
    rec_metrics,
)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_closed_form_and_brute_force(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            closed = 1 - math.comb(n - c, k) / math.comb(n, k)
            # brute force: fraction of k-subsets of the n samples holding >= 1 correct one
            samples = [True] * c + [False] * (n - c)
            subsets = list(itertools.combinations(samples, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            got = pass_at_k(n, c, k)
            assert got == pytest.approx(closed, abs=1e-12)
            assert got == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_known_values_and_errors():
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert mean_pass_at_k([(4, 1), (4, 3)], 1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_pass_k_values():
    assert pass_k_values(1) == []
    assert pass_k_values(8) == [2, 4, 8]
    assert pass_k_values(6) == [2, 4, 6]


def test_first_rank_duplicates_invalid_and_miss():
    assert first_rank(["A", "B", "C"], "A") == 0
    assert first_rank(["A", "B", "C"], "C") == 2
    assert first_rank(["A", "B"], "Z") is None
    # a repeated title is one item: the repeat does not push the target down
    assert first_rank(["A", "A", "B"], "B") == 1
    assert first_rank(["A", "B", "A", "B", "C"], "C") == 2
    # an invalid generation keeps its slot (it is a miss at that rank)
    assert first_rank([None, "B"], "B") == 1
    assert first_rank([None, None], "B") is None


def test_rec_metrics_hand_computed():
    # ranks: hit at 0, hit at 2, two rows tied at rank 1, a miss, a hit beyond K=5 (rank 7)
    ranks = [0, 2, 1, 1, None, 7]
    m = rec_metrics(ranks, ks=(1, 3, 5, 10))
    n = 6
    assert m["HR@1"] == pytest.approx(1 / n)
    assert m["HR@3"] == pytest.approx(4 / n)
    assert m["HR@5"] == pytest.approx(4 / n)
    assert m["HR@10"] == pytest.approx(5 / n)
    ndcg3 = (1 / math.log2(2) + 1 / math.log2(4) + 2 / math.log2(3)) / n
    assert m["NDCG@1"] == pytest.approx(1 / n)
    assert m["NDCG@3"] == pytest.approx(ndcg3)
    assert m["NDCG@10"] == pytest.approx(ndcg3 + (1 / math.log2(9)) / n)
    assert rec_metrics([None, None])["HR@20"] == 0.0


def test_math_metrics_greedy_and_sampled():
    groups = {"a": [True, False, False, False], "b": [True, True, True, True], "c": [False] * 4}
    greedy = {"a": False, "b": True, "c": False}
    m = math_metrics(groups, greedy, [10, 20], [True, False, None], "tokens")
    assert m["pass@1"] == pytest.approx(1 / 3)  # greedy accuracy
    assert m["pass@1_source"] == "greedy"
    assert m["avg@4"] == pytest.approx((0.25 + 1 + 0) / 3)
    assert m["pass@2"] == pytest.approx((pass_at_k(4, 1, 2) + 1 + 0) / 3)
    assert m["pass@4"] == pytest.approx(2 / 3)
    assert m["mean_response_length"] == 15
    assert m["truncation_rate"] == 0.5  # the unknown one is left out
    only_sampled = math_metrics({"a": [True, False]}, {}, [1], [None], "chars")
    assert only_sampled["pass@1"] == only_sampled["avg@2"] == 0.5
    assert only_sampled["pass@1_source"] == "sampled"
    assert only_sampled["truncation_rate"] is None
