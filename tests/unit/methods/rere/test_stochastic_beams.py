"""Stochastic beams (Kool et al. 2019) under the trie: pure logic on a fixed fake scorer.

The sampled distribution is the policy renormalised over the trie's allowed tokens per step
(docs/rere.md "Stochastic beams"); the tests compute it and the exact without-replacement
inclusion probabilities by enumerating ordered draws."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rlkit.methods.rere.beam_search import TrieConstraint, run_beam_searches
from rlkit.methods.rere.item_trie import ItemTrie
from rlkit.methods.rere.stochastic_beams import StochasticBeamSearch, conditional_gumbel

EOS = 0
VOCAB = 8
ITEMS = [[1, EOS], [2, EOS], [2, 3, EOS], [3, 1, EOS], [3, 4, 5, EOS]]


def table_logprobs(seed: int = 0, boost: dict | None = None):
    """A fixed random full-vocab log-softmax per prefix; `boost` {prefix: (token, logit)}."""
    boost = boost or {}

    def logprobs(prefix: tuple[int, ...]) -> np.ndarray:
        rng = np.random.default_rng(abs(hash((seed, prefix))) % 2**32)
        x = rng.normal(size=VOCAB)
        if prefix in boost:
            tok, val = boost[prefix]
            x[tok] = val
        return x - np.logaddexp.reduce(x)

    def scorer(prefixes, candidates, top_k):
        return [
            {int(t): float(logprobs(tuple(p))[t]) for t in c}
            for p, c in zip(prefixes, candidates, strict=True)
        ]

    return scorer, logprobs


def trie_probs(logprobs, prompt, items) -> list[float]:
    """Each item's probability under the policy renormalised over the trie's children."""
    trie = ItemTrie.from_sequences(items, EOS)
    out = []
    for item in items:
        node, lp = trie.root, 0.0
        for j, tok in enumerate(item):
            kids = trie.children(node)
            row = logprobs(tuple(prompt) + tuple(item[:j]))
            lp += row[tok] - np.logaddexp.reduce(row[kids])
            node = trie.child(node, tok)
        out.append(math.exp(lp))
    return out


def exact_inclusion(p: list[float], k: int) -> list[float]:
    """P(item i is among k draws without replacement), by enumerating ordered draws."""
    incl = [0.0] * len(p)
    for order in itertools.permutations(range(len(p)), k):
        prob, left = 1.0, 1.0
        for i in order:
            prob *= p[i] / left
            left -= p[i]
        for i in order:
            incl[i] += prob
    return incl


def sample(scorer, k: int, seeds, prompt=(6, 7), items=ITEMS, max_tokens=10):
    constraint = TrieConstraint(ItemTrie.from_sequences(items, EOS))
    searches = [
        StochasticBeamSearch(list(prompt), k, max_tokens, [EOS], constraint, seed=s) for s in seeds
    ]
    run_beam_searches(scorer, searches)
    return searches


def test_probabilities_sum_to_one_and_exact_inclusion_sums_to_k():
    _, lp = table_logprobs(3)
    p = trie_probs(lp, (6, 7), ITEMS)
    assert math.isclose(sum(p), 1.0, abs_tol=1e-9)
    assert math.isclose(sum(exact_inclusion(p, 2)), 2.0, abs_tol=1e-9)
    assert exact_inclusion([0.5, 0.3, 0.2], 1) == pytest.approx([0.5, 0.3, 0.2])


def test_k_equal_to_the_catalogue_returns_every_item_once():
    scorer, lp = table_logprobs(1)
    for s in sample(scorer, len(ITEMS), range(20)):
        got = [ids for ids, _ in s.results()]
        assert sorted(got) == sorted(ITEMS)
        assert s.inclusion_probs() == [1.0] * len(ITEMS)  # kappa = -inf: all included
        for ids, score in s.results():  # scores stay the full-vocab sums
            want = sum(lp((6, 7, *ids[:j]))[t] for j, t in enumerate(ids))
            assert math.isclose(score, want, abs_tol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_inclusion_frequencies_match_sampling_without_replacement(k):
    scorer, lp = table_logprobs(3)
    n = 2000
    p = trie_probs(lp, (6, 7), ITEMS)
    want = exact_inclusion(p, k)
    counts = [0] * len(ITEMS)
    ratio_sum = 0.0  # priority-sampling estimate of sum_y p(y) = 1
    for s in sample(scorer, k, range(n)):
        res = [ids for ids, _ in s.results()]
        assert len(res) == k and len({tuple(r) for r in res}) == k  # distinct items
        for ids, q in zip(res, s.inclusion_probs(), strict=True):
            counts[ITEMS.index(ids)] += 1
            ratio_sum += p[ITEMS.index(ids)] / q
    for c, w in zip(counts, want, strict=True):
        half = 3.29 * math.sqrt(w * (1 - w) / n) + 1 / n  # binomial 99.9% interval
        assert abs(c / n - w) <= half, (counts, want)
    assert abs(ratio_sum / n - 1.0) < 0.1  # the estimator is unbiased


def test_same_seed_same_beams_other_seeds_differ():
    scorer, _ = table_logprobs(3)
    a = sample(scorer, 2, [11, 11, 12, 13, 14, 15])
    first = [(s.results(), s.inclusion_probs()) for s in a]
    assert first[0] == first[1]
    assert len({tuple(tuple(ids) for ids, _ in r) for r, _ in first}) > 1


def test_beams_come_in_order_of_g():
    scorer, _ = table_logprobs(2)
    for s in sample(scorer, 3, range(10)):
        gs = [s.g[tuple(ids)] for ids, _ in s.results()]
        assert gs == sorted(gs, reverse=True)


def test_inclusion_estimates_in_unit_interval_and_near_one_for_a_dominant_item():
    # the first token 3 then 4 then 5 (item [3, 4, 5, EOS]) carries nearly all the mass
    boost = {(6, 7): (3, 12.0), (6, 7, 3): (4, 12.0), (6, 7, 3, 4): (5, 12.0)}
    boost[(6, 7, 3, 4, 5)] = (EOS, 12.0)
    scorer, lp = table_logprobs(4, boost)
    assert trie_probs(lp, (6, 7), ITEMS)[4] > 0.999
    for s in sample(scorer, 2, range(50)):
        qs = s.inclusion_probs()
        assert all(0.0 < q <= 1.0 for q in qs)
        res = [ids for ids, _ in s.results()]
        assert res[0] == [3, 4, 5, EOS] and qs[0] > 0.999  # sampled first, q ~ 1
        assert qs[1] < qs[0]  # a rare item's estimate is below the dominant one's


def test_conditional_gumbel_max_equals_parent_and_order_is_kept():
    rng = np.random.default_rng(0)
    pert = rng.gumbel(size=6) + rng.normal(size=6)
    g = conditional_gumbel(1.5, pert)
    assert math.isclose(g.max(), 1.5, abs_tol=1e-12)
    assert list(np.argsort(g)) == list(np.argsort(pert))
    # the plain formula where it is stable
    z = pert.max()
    plain = -np.log(np.exp(-1.5) - np.exp(-z) + np.exp(-pert))
    assert np.allclose(g, plain, atol=1e-9)
