"""rlkit's one constrained beam search (ReRe): pure logic on hand-made scorers, the compact item
trie, and equality with transformers `generate(..., prefix_allowed_tokens_fn=trie)` on a tiny
random Qwen2 through the HF engine (same token ids, scores to 1e-4)."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from rlkit.methods.rere.beam_search import (
    BeamSearch,
    TrieConstraint,
    beam_search,
    constrained_beam_search,
    transformers_reference,
)
from rlkit.methods.rere.item_trie import ItemTrie

EOS = 0
VOCAB = 8


def table_scorer(seed: int = 0, alias: dict | None = None, calls: list | None = None):
    """A fake model: a fixed random full-vocab log-softmax per prefix. `alias` {a: b} makes
    token a indistinguishable from b (same logit, same rows after it): exact ties."""
    alias = alias or {}

    def logprobs(prefix: tuple[int, ...]) -> np.ndarray:
        key = tuple(alias.get(t, t) for t in prefix)
        rng = np.random.default_rng(abs(hash((seed, key))) % 2**32)
        x = rng.normal(size=VOCAB).astype(np.float32)
        for a, b in alias.items():
            x[a] = x[b]
        return x - np.log(np.exp(x).sum())

    def scorer(prefixes, candidates, top_k):
        if calls is not None:
            calls.append(len(prefixes))
        out = []
        for p, c in zip(prefixes, candidates):
            lp = logprobs(tuple(p))
            ids = c if c is not None else list(np.argsort(-lp)[:top_k])
            out.append({int(t): float(lp[t]) for t in ids})
        return out

    return scorer, logprobs


def exact_score(logprobs, prompt, seq) -> float:
    """Sum of the fake model's full-vocab logprobs of `seq` after `prompt` (float32 sums)."""
    total = np.float32(0.0)
    for j, tok in enumerate(seq):
        total = np.float32(total + logprobs(tuple(prompt) + tuple(seq[:j]))[tok])
    return float(total)


def search(scorer, prompts, g, max_tokens, seqs):
    return constrained_beam_search(
        scorer, prompts, g, max_tokens, eos_token_ids=[EOS], allowed_sequences=seqs
    )


def test_exhaustive_when_beams_cover_the_catalogue():
    """With G >= #items every item survives: the result is all items sorted by exact score."""
    scorer, lp = table_scorer(1)
    rng = random.Random(0)
    seqs = {tuple(rng.randint(1, 3) for _ in range(rng.randint(1, 4))) + (EOS,) for _ in range(9)}
    seqs = [list(s) for s in seqs]
    (beams,) = search(scorer, [[5, 6]], len(seqs), 10, seqs)
    want = sorted(seqs, key=lambda s: -exact_score(lp, [5, 6], s))
    assert [b.token_ids for b in beams] == want
    for b in beams:
        assert b.score == pytest.approx(exact_score(lp, [5, 6], b.token_ids), abs=1e-6)


def test_eos_inside_the_trie_prefix_item_and_longer_item_both_returned():
    scorer, lp = table_scorer(2)
    seqs = [[3, EOS], [3, 4, EOS], [3, 4, 5, EOS]]
    (beams,) = search(scorer, [[7]], 3, 10, seqs)
    assert sorted(b.token_ids for b in beams) == sorted(seqs)
    assert [b.score for b in beams] == sorted((b.score for b in beams), reverse=True)


def test_fewer_items_than_beams_returns_each_item_once():
    scorer, _ = table_scorer(3)
    seqs = [[1, 2, EOS], [1, 3, EOS], [1, 2, EOS], [1, 3, EOS]]  # duplicates: 2 items
    (beams,) = search(scorer, [[4]], 5, 10, seqs)
    assert sorted(b.token_ids for b in beams) == [[1, 2, EOS], [1, 3, EOS]]


def test_exact_ties_are_ordered_by_token_id_and_both_kept():
    scorer, lp = table_scorer(4, alias={3: 2})  # token 3 behaves exactly like token 2
    seqs = [[3, 1, EOS], [2, 1, EOS], [1, EOS]]
    (beams,) = search(scorer, [[6]], 3, 5, seqs)
    order = [b.token_ids for b in beams]
    by_ids = {tuple(b.token_ids): b.score for b in beams}
    assert by_ids[(2, 1, EOS)] == by_ids[(3, 1, EOS)]  # an exact tie
    assert order.index([2, 1, EOS]) == order.index([3, 1, EOS]) - 1  # lower token id first


def test_one_scorer_call_per_step_for_all_prompts():
    calls: list[int] = []
    scorer, _ = table_scorer(5, calls=calls)
    seqs = [[a, b, EOS] for a, b in itertools.product(range(1, 5), repeat=2)]
    prompts = [[5], [6], [7, 7]]
    out = search(scorer, prompts, 3, 3, seqs)
    assert len(calls) == 3  # three tokens per item: steps 1..3, every prompt in each call
    assert calls[0] == len(prompts)  # step 1: one live beam per prompt
    assert all(len(beams) == 3 for beams in out)


def test_max_tokens_cuts_beams_like_transformers():
    """At the last step every top-G candidate is finished (transformers' max-length rule)."""
    scorer, lp = table_scorer(6)
    seqs = [[1, 2, 3, EOS], [1, 4, 3, EOS]]
    (beams,) = search(scorer, [[5]], 2, 2, seqs)
    assert sorted(b.token_ids for b in beams) == [[1, 2], [1, 4]]
    for b in beams:
        assert b.score == pytest.approx(exact_score(lp, [5], b.token_ids), abs=1e-6)


def test_legacy_callable_matches_trie():
    scorer, _ = table_scorer(7)
    seqs = [[a, b, EOS] for a, b in itertools.product(range(1, 4), repeat=2)]
    trie = ItemTrie.from_sequences(seqs, EOS)
    by_trie = search(scorer, [[5]], 4, 5, seqs)
    by_fn = constrained_beam_search(
        scorer, [[5]], 4, 5, eos_token_ids=[EOS], allowed_tokens=trie.make_allowed_fn()
    )
    assert [[b.token_ids for b in r] for r in by_trie] == [[b.token_ids for b in r] for r in by_fn]


def test_state_machine_can_be_driven_step_by_step():
    scorer, _ = table_scorer(8)
    seqs = [[1, 2, EOS], [1, 3, EOS], [2, EOS]]
    bs = BeamSearch([5], 2, 4, [EOS], TrieConstraint(ItemTrie.from_sequences(seqs, EOS)))
    steps = 0
    while not bs.done:
        reqs = bs.requests()
        assert all(c is not None and len(c) for _, c in reqs)
        bs.advance(scorer([p for p, _ in reqs], [c for _, c in reqs], bs.k))
        steps += 1
    assert steps <= 3 and 1 <= len(bs.results()) <= 2


def explicit_scorer(table: dict):
    """A fake model given as {response prefix: {token: logprob}} (the prompt is ignored)."""

    def scorer(prefixes, candidates, top_k):
        return [{t: table[tuple(p[1:])][t] for t in c} for p, c in zip(prefixes, candidates)]

    return scorer


def run_table(table, seqs, g, max_tokens=8):
    (beams,) = search(explicit_scorer(table), [[9]], g, max_tokens, seqs)
    return [(b.token_ids, round(b.score, 4)) for b in beams]


def test_only_eos_candidates_in_the_top_g_finish():
    """(1, EOS) scores -0.4 but ranks third of the step's candidates with G=2: transformers
    drops it (only the first G of the 2G candidates may finish)."""
    table = {
        (): {1: -0.1, 2: -0.2},
        (1,): {4: -0.01, EOS: -0.3},
        (2,): {5: -0.01},
        (1, 4): {EOS: -5.0},
        (2, 5): {EOS: -6.0},
    }
    seqs = [[1, 4, EOS], [1, EOS], [2, 5, EOS]]
    assert run_table(table, seqs, 2) == [([1, 4, EOS], -5.11), ([2, 5, EOS], -6.21)]


def test_running_beams_come_from_the_2g_candidates():
    """After (1, EOS) finishes, both other candidates keep running (K = 2G backups)."""
    table = {
        (): {1: -0.05},
        (1,): {EOS: -0.05, 2: -0.25, 3: -0.35},
        (1, 2): {EOS: -4.7},
        (1, 3): {EOS: -0.1},
    }
    seqs = [[1, EOS], [1, 2, EOS], [1, 3, EOS]]
    assert run_table(table, seqs, 2) == [([1, EOS], -0.1), ([1, 3, EOS], -0.5)]


def test_search_continues_while_a_running_beam_beats_the_worst_finished():
    table = {
        (): {1: -0.1, 2: -0.15},
        (1,): {EOS: -0.02, 3: -0.07},
        (2,): {4: -0.01},
        (2, 4): {EOS: -2.84},
        (1, 3): {EOS: -0.01, 5: -0.005},
        (1, 3, 5): {EOS: -0.001},
    }
    seqs = [[1, EOS], [1, 3, EOS], [1, 3, 5, EOS], [2, 4, EOS]]
    assert run_table(table, seqs, 2) == [([1, EOS], -0.12), ([1, 3, 5, EOS], -0.176)]


def test_trie_layout_walks_and_duplicates():
    trie = ItemTrie({"a": [1, 2], "b": [1, 2, 3], "c": [4], "a-dup": [1, 2, EOS]}, EOS)
    assert len(trie) == 3 and trie.titles == ["a", "b", "c"]
    assert trie.allowed([]) == [1, 4]
    assert trie.allowed([1, 2]) == [EOS, 3]  # EOS inside the trie
    assert trie.decode_item([1, 2, EOS]) == "a" and trie.decode_item([1, 2, 3]) == "b"
    assert trie.decode_item([1]) is None and trie.walk([9]) is None
    node = trie.child(trie.child(trie.root, 1), 2)
    assert trie.children(node) == [EOS, 3]


def test_trie_50k_titles_builds_fast_and_small():
    import time

    rng = random.Random(0)
    seqs = [[rng.randrange(1, 50_000) for _ in range(rng.randint(3, 12))] for _ in range(50_000)]
    t0 = time.perf_counter()
    trie = ItemTrie.from_sequences(seqs, EOS)
    assert time.perf_counter() - t0 < 5.0
    assert trie.nbytes < 8 * 2**20
    for s in seqs[:200]:
        assert trie.item_index([*s, EOS]) is not None
        for j in range(len(s)):
            assert s[j] in trie.allowed(s[:j])


# ---------------------------------------------------------------- equality with transformers


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    pytest.importorskip("transformers")
    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.engines import make_rollout_engine

    path = build_tiny_model(tmp_path_factory.mktemp("cb") / "m", num_layers=1, seed=3)
    return make_rollout_engine("hf", str(path))


def reference(model, prompt, trie, g, max_new, eos):
    """transformers generate with the same trie (placeholder beams dropped)."""
    assert trie.eos_token_id == eos
    return transformers_reference(model, prompt, trie, g, max_new)


def assert_same(ours, ref):
    assert [b.token_ids for b in ours] == [ids for ids, _ in ref]
    assert [b.score for b in ours] == pytest.approx([s for _, s in ref], abs=1e-4)


def random_catalogue(rng, n, alphabet="abcde ", max_len=6):
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, max_len))).strip() or "x"
        for _ in range(n)
    ]


@pytest.mark.parametrize(
    "g,n_items,max_new", [(1, 12, 16), (3, 2, 16), (4, 30, 16), (6, 40, 5), (8, 60, 16)]
)
def test_equals_transformers_generate_on_tiny_model(hf, g, n_items, max_new):
    tok, model = hf.tokenizer, hf.model
    rng = random.Random(g * 100 + n_items)
    trie = ItemTrie.from_tokenizer(tok, random_catalogue(rng, n_items))
    seqs = trie.sequences()
    prompts = [
        tok.encode(f"user {u}: history ab, cd. next:", add_special_tokens=False) for u in (1, 2)
    ]
    ours = beam_search(hf, prompts, g, max_new, allowed_sequences=seqs)
    for p, beams in zip(prompts, ours):
        ref = reference(model, p, trie, g, max_new, tok.eos_token_id)
        # every beam is a distinct catalogue path, cut at max_new tokens when it is longer
        paths = {tuple(seq[:max_new]) for seq in seqs}
        assert len(beams) == min(g, len(paths))
        assert_same(beams, ref)


@pytest.fixture(scope="module")
def peaky(tmp_path_factory):
    """A tiny model with 3x embeddings (tied head): sharper next-token distributions, so EOS
    competes with longer paths and the finishing / early-stop rules matter."""
    pytest.importorskip("transformers")
    import torch

    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.engines.hf_engine import HFEngine

    eng = HFEngine(str(build_tiny_model(tmp_path_factory.mktemp("pk") / "m", num_layers=1, seed=5)))
    with torch.no_grad():
        eng.model.get_input_embeddings().weight.mul_(3.0)
    return eng


@pytest.mark.parametrize("first", [0, 15])
def test_equals_transformers_on_random_tries_with_eos_inside(peaky, first):
    """Random token-id catalogues (items that are prefixes of others, duplicates, fewer items
    than beams, cuts at max_tokens): ours == transformers, trial by trial."""
    tok = peaky.tokenizer
    eos, ids = tok.eos_token_id, tok.convert_tokens_to_ids(list("abcd"))
    for trial in range(first, first + 15):
        rng = random.Random(trial)
        g, max_new = rng.choice([2, 3, 4]), rng.choice([3, 4, 6])
        seqs = [
            [rng.choice(ids) for _ in range(rng.randint(1, 5))] + [eos]
            for _ in range(rng.randint(2, 30))
        ]
        prompt = tok.encode(f"u{trial}: next", add_special_tokens=False)
        (ours,) = beam_search(peaky, [prompt], g, max_new, allowed_sequences=seqs)
        ref = reference(peaky.model, prompt, ItemTrie.from_sequences(seqs, eos), g, max_new, eos)
        assert_same(ours, ref)


def test_equals_transformers_with_eos_inside_trie_and_exact_ties(hf):
    """Token ids 'y' and 'z' get identical embedding rows (tied lm_head): every continuation
    after them is an exact tie. Items 'y'/'z' and their extensions share scores pairwise."""
    import torch

    tok, model = hf.tokenizer, hf.model
    y, z = tok.convert_tokens_to_ids(["y", "z"])
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        saved = emb[z].clone()
        emb[z] = emb[y]
    try:
        eos = tok.eos_token_id
        seqs = [[y, eos], [z, eos], [y, y, eos], [z, y, eos], [y, z, y, eos]]
        trie = ItemTrie.from_sequences(seqs, eos)
        prompt = tok.encode("pick one:", add_special_tokens=False)
        (ours,) = beam_search(hf, [prompt], 4, 8, allowed_sequences=seqs)
        ref = reference(model, prompt, trie, 4, 8, eos)
        # same multiset of (ids, score); exact ties may be ordered differently by torch.topk
        assert sorted(b.token_ids for b in ours) == sorted(ids for ids, _ in ref)
        assert [b.score for b in ours] == pytest.approx([s for _, s in ref], abs=1e-4)
        pairs = {tuple(b.token_ids): b.score for b in ours}
        if (y, eos) in pairs and (z, eos) in pairs:
            assert pairs[(y, eos)] == pairs[(z, eos)]
            order = [tuple(b.token_ids) for b in ours]
            assert order.index((y, eos)) < order.index((z, eos))  # our rule: lower id first
    finally:
        with torch.no_grad():
            emb[z] = saved


def test_scores_are_full_vocab_sums_not_renormalised(hf):
    import torch

    tok, model = hf.tokenizer, hf.model
    trie = ItemTrie.from_tokenizer(tok, ["Heat", "Alien", "Aliens", "Up"])
    prompt = tok.encode("Next movie:", add_special_tokens=False)
    (beams,) = beam_search(hf, [prompt], 4, 16, allowed_sequences=trie)
    for b in beams:
        ids = torch.tensor([prompt + b.token_ids])
        with torch.no_grad():
            logp = model(ids).logits[0, :-1].float().log_softmax(-1)
        want = sum(logp[len(prompt) - 1 + k, t].item() for k, t in enumerate(b.token_ids))
        assert b.score == pytest.approx(want, abs=1e-4)
        assert b.text == f'"{trie.decode_item(b.token_ids)}"\n'
    assert math.isfinite(beams[-1].score) and len(beams) == 4
