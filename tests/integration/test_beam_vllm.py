"""rlkit's constrained beam search on a real vLLM engine (one engine for the module): same beams
and scores as transformers `generate(..., prefix_allowed_tokens_fn=trie)`, including a
1,000-item catalogue whose first step allows more than vLLM's 128 `logprob_token_ids`."""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.slow

G = 6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A tiny Qwen2 (head_dim 64 for vLLM) with 3x embeddings: peaked next-token distributions,
    so beam rankings are not decided by float noise between the two engines."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlkit.data.tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("beam_vllm") / "m", num_layers=1, seed=5)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(3.0)
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def engine(model_dir):
    from rlkit.engines import make_rollout_engine

    eng = make_rollout_engine("vllm", model_dir, max_model_len=128, seed=0)
    yield eng
    eng.llm.llm_engine.engine_core.shutdown()


@pytest.fixture(scope="module")
def hf_model(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def assert_same(beams, ref):
    assert [b.token_ids for b in beams] == [ids for ids, _ in ref]
    assert [b.score for b in beams] == pytest.approx([s for _, s in ref], abs=1e-4)


def test_titles_catalogue_equals_transformers(engine, hf_model):
    from rlkit.methods.rere.beam_search import beam_search, transformers_reference
    from rlkit.methods.rere.item_trie import ItemTrie

    model, tok = hf_model
    titles = ["Alien", "Aliens", "Heat", "Up", "Brazil", "Her", "Toy Story", "Toy Soldiers"]
    trie = ItemTrie.from_tokenizer(tok, titles)
    prompts = [tok.encode(f"History: {h}. Next:", add_special_tokens=False) for h in titles[:3]]
    out = beam_search(engine, prompts, G, 16, allowed_sequences=trie.sequences())
    for prompt, beams in zip(prompts, out, strict=True):
        assert len(beams) == G and all(trie.decode_item(b.token_ids) for b in beams)
        assert_same(beams, transformers_reference(model, prompt, trie, G, 16))


def test_thousand_items_more_than_128_allowed_tokens(engine, hf_model):
    """Synthetic catalogue: 1,000 token-id items over 200 distinct first tokens (> 128)."""
    from rlkit.methods.rere.beam_search import beam_search, transformers_reference
    from rlkit.methods.rere.item_trie import ItemTrie

    model, tok = hf_model
    eos, rng = tok.eos_token_id, random.Random(0)
    vocab = [t for t in range(len(tok)) if t not in set(tok.all_special_ids)]
    firsts = rng.sample(vocab, 200)
    seqs = [[firsts[i % 200], *rng.sample(vocab, rng.randint(1, 4)), eos] for i in range(1000)]
    trie = ItemTrie.from_sequences(seqs, eos)
    assert len(trie.children(trie.root)) == 200 and len(trie) == 1000
    prompts = [tok.encode(f"user {u} likes:", add_special_tokens=False) for u in range(2)]
    out = beam_search(engine, prompts, G, 8, allowed_sequences=seqs)
    for prompt, beams in zip(prompts, out, strict=True):
        assert len(beams) == G and all(trie.item_index(b.token_ids) is not None for b in beams)
        assert_same(beams, transformers_reference(model, prompt, trie, G, 8))


def test_next_token_logprobs_chunks_any_number_of_candidates(engine, hf_model):
    """Every id of the 260-token vocabulary (3 requests of <= 128) == transformers'."""
    import torch

    model, tok = hf_model
    prefix = tok.encode("score me", add_special_tokens=False)
    cand = list(range(len(tok)))
    assert len(cand) > 2 * 128
    (got,) = engine.next_token_logprobs([prefix], [cand])
    with torch.no_grad():
        want = model(torch.tensor([prefix])).logits[0, -1].float().log_softmax(-1)
    assert sorted(got) == cand
    assert [got[t] for t in cand] == pytest.approx(want[cand].tolist(), abs=1e-4)


def test_refuses_to_step_under_live_requests(engine):
    from rlkit.engines.rollout_protocol import SamplingConfig

    engine.add("live-0", [5, 6, 7], SamplingConfig(max_tokens=4))
    try:
        with pytest.raises(RuntimeError, match="live requests"):
            engine.next_token_logprobs([[5, 6]], [[9, 1]])
    finally:
        engine.abort(["live-0"])
