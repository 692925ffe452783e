"""PrefixKVScorer: one token per beam from the previous step's KV cache, equal to scoring whole
prefixes (rlkit.engines.prefix_kv_scorer)."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.engines.hf_engine import HFEngine

    path = build_tiny_model(  # grouped-query attention: 4 query heads share 2 KV heads
        tmp_path_factory.mktemp("kv") / "m",
        num_layers=2,
        hidden_size=256,
        num_heads=4,
        num_kv_heads=2,
        seed=7,
    )
    return HFEngine(str(path))


def unbatched(engine, prefixes, candidates, top_k) -> list[dict]:
    """The reference: one forward per prefix, no cache, no padding."""
    import torch

    out = []
    for p, c in zip(prefixes, candidates):
        with torch.no_grad():
            logp = engine.model(input_ids=torch.tensor([p])).logits[0, -1].log_softmax(-1)
        if c is None:
            vals, idx = logp.topk(top_k)
            out.append(dict(zip(idx.tolist(), vals.tolist())))
        else:
            out.append({t: logp[t].item() for t in c})
    return out


def assert_close(got: list[dict], want: list[dict]) -> None:
    assert [sorted(g) for g in got] == [sorted(w) for w in want]
    for g, w in zip(got, want):
        assert [g[t] for t in sorted(g)] == pytest.approx([w[t] for t in sorted(w)], abs=1e-5)


def test_extending_beams_costs_one_token_and_equals_whole_prefix_scoring(engine):
    rng = random.Random(0)
    prompts = [[rng.randrange(3, 200) for _ in range(n)] for n in (9, 9, 14)]  # two lengths
    scorer = engine.beam_scorer()
    beams = [list(p) for p in prompts]
    cands = [[rng.randrange(3, 200) for _ in range(40)] for _ in beams]
    for step in range(4):
        got = scorer(beams, cands, 20)
        assert_close(got, unbatched(engine, beams, cands, 20))
        assert_close(engine.next_token_logprobs(beams, cands, 20), got)
        if step == 0:
            assert (scorer.prefilled, scorer.extended) == (3, 0)
        # every beam forks into two children (a search keeps several children of one parent)
        beams = [b + [c] for b in beams for c in (rng.randrange(3, 200), rng.randrange(3, 200))]
        beams = beams[:6]
        cands = [[rng.randrange(3, 200) for _ in range(40)] for _ in beams]
    assert scorer.prefilled == 3  # the prompts, once; every later row came from the cache
    assert scorer.extended == 6 * 3
    assert len(scorer._memo) == 6  # only the last call's prefixes are kept
    # every beam keeps its prompt's cache by reference (one copy per prompt) and its own
    # suffix of the 3 tokens after the prompt
    rows = list(scorer._memo.values())
    assert len({id(r.prompt) for r in rows}) == 1
    assert {r.suffix_len for r in rows} == {3}


def test_prefixes_without_a_cached_parent_are_prefilled_in_the_same_call(engine):
    scorer = engine.beam_scorer()
    scorer([[5, 6, 7]], [[8, 9]], 5)
    mixed = [[5, 6, 7, 8], [11, 12, 13, 14], [5, 6, 7, 9, 10]]  # a child, a stranger, a grandchild
    got = scorer(mixed, [None, [3, 4], [8]], 5)
    assert_close(got, unbatched(engine, mixed, [None, [3, 4], [8]], 5))
    assert (scorer.prefilled, scorer.extended) == (3, 1)


def test_scorer_equals_transformers_beams_on_a_two_layer_model(engine):
    from rlkit.methods.rere.beam_search import beam_search, transformers_reference
    from rlkit.methods.rere.item_trie import ItemTrie

    tok = engine.tokenizer
    rng = random.Random(3)
    titles = [
        " ".join(rng.choice(["ab", "cd", "e", "fgh", "ij"]) for _ in range(rng.randint(1, 5)))
        for _ in range(80)
    ]
    trie = ItemTrie.from_tokenizer(tok, titles)
    texts = ("history ab cd", "a b c d e f g h i")
    prompts = [tok.encode(t, add_special_tokens=False) for t in texts]
    assert len(prompts[0]) != len(prompts[1])  # one padded forward
    ours = beam_search(engine, prompts, 8, 20, allowed_sequences=trie)
    for p, beams in zip(prompts, ours):
        ref = transformers_reference(engine.model, p, trie, 8, 20)
        assert [b.token_ids for b in beams] == [ids for ids, _ in ref]
        assert [b.score for b in beams] == pytest.approx([s for _, s in ref], abs=1e-4)


def test_gqa_sdpa_equals_transformers_sdpa_on_a_left_padded_batch(engine):
    """The engine's attention keeps grouped heads grouped under a padding mask; it computes
    what transformers' "sdpa" (which repeats the keys and values per query head) computes."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlkit.engines.shared_prompt_attention import GQA_SDPA

    assert engine.model.config._attn_implementation == GQA_SDPA
    plain = AutoModelForCausalLM.from_pretrained(engine.model_path, attn_implementation="sdpa")
    ids = torch.tensor([[0, 0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15]])
    mask = (torch.arange(7) >= torch.tensor([[3], [0]])).long()
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = engine.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        ref = plain(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    assert torch.allclose(ours[mask.bool()], ref[mask.bool()], atol=1e-5)
    assert torch.isfinite(ours[mask.bool()]).all()
