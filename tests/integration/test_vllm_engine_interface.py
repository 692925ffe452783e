"""The rollout worker's request kinds on a real vLLM worker: a method's stepped kind (ReRe's
constrained beam search over an item trie: beams ranked by full-vocabulary logprobs of allowed
tokens), prefill-only scoring, and a refused sampling request."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

TITLES = ["Alien", "Aliens", "Heat", "Up", "Brazil", "Her"]


def test_constrained_beam_search_and_scoring(tiny_model, vllm_worker, tmp_path):
    import json

    import ray
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.methods.rere.item_trie import ItemTrie
    from rlkit.methods.rere.strategy import BeamRequest
    from rlkit.runtime.placement.cluster import reset_workers

    reset_workers([vllm_worker], tiny_model)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    trie = ItemTrie.from_tokenizer(tok, TITLES, eos_token_id=tok.eos_token_id)
    catalogue = tmp_path / "titles.json"
    catalogue.write_text(json.dumps(TITLES))
    prompt = tok("History: Heat, Up. Next:", add_special_tokens=False)["input_ids"]
    job = BeamRequest(
        "b:0", prompt, SamplingConfig(), num_beams=4, max_tokens=16, catalogue=str(catalogue)
    )
    (done,) = ray.get(vllm_worker.complete.remote([job]))
    beams = done.completion.beams
    titles = [trie.decode_item(b.token_ids) for b in beams]
    assert len(beams) == 4 and None not in titles and len(set(titles)) == 4
    scores = [sum(b.logprobs) for b in beams]
    assert scores == sorted(scores, reverse=True)
    # Scores are sums of full-vocabulary (not renormalised) logprobs: recompute with transformers
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    for beam, score in zip(beams, scores, strict=True):
        ids = torch.tensor([prompt + beam.token_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        want = sum(logp[len(prompt) - 1 + k, t].item() for k, t in enumerate(beam.token_ids))
        assert score == pytest.approx(want, abs=1e-3)
    # prefill-only scoring of given token sequences (prompt logprobs)
    seq = prompt + beams[0].token_ids
    (scored,) = ray.get(vllm_worker.score.remote([seq], [len(prompt)]))
    assert scored == pytest.approx(
        [logp_k for logp_k in _hf_token_logprobs(model, seq, len(prompt))], abs=1e-3
    )


def _hf_token_logprobs(model, seq, start):
    import torch

    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([seq])).logits[0, :-1].float(), -1)
    return [logp[i - 1, seq[i]].item() for i in range(start, len(seq))]


def test_refused_request_is_reported_not_fatal(tiny_model, vllm_worker):
    import ray

    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.runtime.actors.request_kinds import SampleRequest

    too_long = SampleRequest("0:0", [5] * 400, SamplingConfig(max_tokens=4))  # > max_model_len
    fine = SampleRequest("1:0", [5, 6, 7], SamplingConfig(max_tokens=4, seed=1))
    done = []
    done += ray.get(vllm_worker.run.remote([too_long, fine], [], 5.0))
    while len(done) < 2:
        done += ray.get(vllm_worker.run.remote([], [], 5.0))
    by_id = {f.request_id: f.completion for f in done}
    assert by_id["0:0"].finish_reason == "error" and by_id["0:0"].text
    assert by_id["1:0"].finish_reason in ("stop", "length") and by_id["1:0"].token_ids


def test_scoring_reads_the_prefix_cache_only_where_it_is_safe(tiny_model, vllm_worker):
    """Scoring requests read cached prefix blocks (VPS probes share their prefixes), but a
    request whose cached blocks cover a scored position is scored again without cache reads:
    every result equals the uncached one (vLLM leaves cached positions' logprobs unset)."""
    import random

    import ray

    from rlkit.runtime.placement.cluster import reset_workers

    rescored = lambda: ray.get(vllm_worker.__ray_call__.remote(lambda w: w.engine.rescored))  # noqa: E731
    rng = random.Random(0)
    seq = [rng.randrange(5, 200) for _ in range(200)]  # > one 128-token CPU KV block
    reset_workers([vllm_worker], tiny_model)  # new weights: an empty prefix cache
    (fresh,) = ray.get(vllm_worker.score.remote([seq], [100]))
    before = rescored()
    ray.get(vllm_worker.score.remote([seq], [190]))  # its first block is cached now
    (covered,) = ray.get(vllm_worker.score.remote([seq], [100]))  # cached block covers 100..127
    assert rescored() == before + 1
    assert covered == fresh
    (beyond,) = ray.get(vllm_worker.score.remote([seq], [150]))  # reads the cached block
    assert rescored() == before + 1
    assert beyond == fresh[50:]
