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


def wide_titles(n_first: int = 138) -> list[str]:
    """Titles whose first bytes take `n_first` distinct values (> 128 allowed ids at the step
    after the opening quote, for the byte-level tokenizer): printable ASCII, then characters
    with distinct UTF-8 lead bytes (2- and 3-byte)."""
    firsts = [chr(c) for c in range(33, 127) if chr(c) not in '"\\']
    firsts += [chr(0x80 + 0x40 * k) for k in range(30)]  # lead bytes 0xC2..0xDF
    # lead bytes 0xE0..0xEF (0xED's valid range ends below the surrogates at 0xD800)
    firsts += [chr(0x1000 * k + (0x100 if k == 13 else 0x900)) for k in range(16)]
    rng = random.Random(1)
    return [f + "".join(rng.choices("abcdefgh", k=2)) for f in firsts[:n_first]]


def test_worker_beam_jobs_merged_and_beside_sampling_equal_transformers(engine, hf_model, tmp_path):
    """Through a rollout worker's loop: a second beam job arrives in a later `run` call while the
    first is mid-search, sampling requests run beside them, and a step allows > 128 ids; every
    job's beams equal transformers `generate` (ids, scores to 1e-4)."""
    import json
    import time

    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.methods.rere.beam_search import transformers_reference
    from rlkit.methods.rere.item_trie import ItemTrie
    from rlkit.methods.rere.strategy import BeamRequest
    from rlkit.runtime.actors.request_kinds import SampleRequest
    from rlkit.runtime.actors.rollout_worker import RolloutWorker

    model, tok = hf_model
    titles = wide_titles()
    catalogue = tmp_path / "wide.json"
    catalogue.write_text(json.dumps(titles))
    trie = ItemTrie.from_tokenizer(tok, titles)
    assert max(len(trie.children(trie.child(trie.root, t))) for t in trie.children(trie.root)) > 128
    prompts = [tok.encode(f"user {u} watched:", add_special_tokens=False) for u in range(2)]
    jobs = [
        BeamRequest(
            f"b{u}:0", p, SamplingConfig(), num_beams=G, max_tokens=12, catalogue=str(catalogue)
        )
        for u, p in enumerate(prompts)
    ]
    samples = [
        SampleRequest(f"s{i}:0", prompts[0], SamplingConfig(max_tokens=8, seed=i)) for i in range(3)
    ]
    worker = RolloutWorker.around(engine)
    try:
        done = worker.run([*samples, jobs[0]], [], 0.0)
        done += worker.run([jobs[1]], [], 0.0)  # joins the first job's search
        t0 = time.monotonic()
        while len(done) < 5 and time.monotonic() - t0 < 120:
            done += worker.run([], [], 1.0)
    finally:
        worker.abort_all()
        worker.loop.close()
    by_id = {f.request_id: f for f in done}
    assert set(by_id) == {"b0:0", "b1:0", "s0:0", "s1:0", "s2:0"}
    assert all(by_id[f"s{i}:0"].completion.token_ids for i in range(3))
    assert by_id["b1:0"].started_s < by_id["b0:0"].ended_s  # the two searches overlapped
    for job in jobs:
        got = by_id[job.request_id].completion.beams
        ref = transformers_reference(model, job.prompt_ids, trie, G, 12)
        assert [b.token_ids for b in got] == [ids for ids, _ in ref]
        assert [sum(b.logprobs) for b in got] == pytest.approx([s for _, s in ref], abs=1e-4)
