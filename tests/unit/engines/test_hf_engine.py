"""HFEngine on a tiny random Qwen2 (hidden 128, 2 heads -> head_dim 64, 2 layers), no hub."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rlkit.engines.rollout_protocol import RolloutEngine, SamplingConfig  # noqa: E402
from rlkit.methods.rere.beam_search import beam_search  # noqa: E402

TITLES = ["Heat", "Alien", "Toy Story", "Toy Soldiers", "Up"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from rlkit.data.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("hf_engine_ckpt"), seed=0)


@pytest.fixture(scope="module")
def engine(ckpt):
    from rlkit.engines.hf_engine import HFEngine

    return HFEngine(str(ckpt), seed=0)


def prompt_ids(engine, text="Recommend a movie:\n"):
    return engine.tokenizer.encode(text, add_special_tokens=False)


def manual_logprobs(model, ids, start):
    """log p(ids[j] | ids[:j]) for j >= start from one plain forward."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return [lp[j - 1, ids[j]].item() for j in range(start, len(ids))]


def test_implements_protocol(engine, ckpt):
    """The request API the worker uses: the HF engine behind its adapter (the factory's), not
    the bare batch engine."""
    from rlkit.engines import make_rollout_engine

    assert not isinstance(engine, RolloutEngine)  # no add/step: batch calls only
    adapted = make_rollout_engine("hf", str(ckpt))
    assert isinstance(adapted, RolloutEngine)
    assert adapted.version == 0 and adapted.model_path == str(ckpt)
    assert engine.version == 0


def test_greedy_generate_equals_transformers_generate(engine):
    prompts = [prompt_ids(engine), prompt_ids(engine, "What is 2+3?\n")]
    out = engine.generate(prompts, SamplingConfig(n=1, temperature=0.0, max_tokens=12))
    for p, comps in zip(prompts, out, strict=True):
        with torch.no_grad():
            ref = engine.model.generate(
                torch.tensor([p]), max_new_tokens=12, do_sample=False, pad_token_id=0
            )
        assert comps[0].token_ids == ref[0, len(p) :].tolist()
        assert len(comps[0].logprobs) == len(comps[0].token_ids)


def test_sampled_logprobs_are_raw_model_logprobs_and_seeded(engine):
    p = prompt_ids(engine)
    cfg = SamplingConfig(n=3, temperature=0.7, top_p=0.9, max_tokens=8, seed=123)
    comps = engine.generate([p], cfg)[0]
    assert len(comps) == 3
    for c in comps:
        # the unscaled (temperature 1, no top-p) log-softmax of the model, as documented
        want = manual_logprobs(engine.model, p + c.token_ids, len(p))
        assert c.logprobs == pytest.approx(want, abs=1e-4)
        assert c.finish_reason in ("stop", "length")
    again = engine.generate([p], cfg)[0]
    assert [c.token_ids for c in again] == [c.token_ids for c in comps]


def test_score_equals_manual_forward(engine):
    seqs = [prompt_ids(engine, "abc def"), prompt_ids(engine, "x+y=z!")]
    got = engine.score(seqs, [3, 1])
    for s, start, g in zip(seqs, [3, 1], got, strict=True):
        assert len(g) == len(s) - start
        assert g == pytest.approx(manual_logprobs(engine.model, s, start), abs=1e-5)


def test_constrained_beam_search_returns_catalogue_items_with_full_vocab_scores(engine):
    from rlkit.methods.rere.item_trie import ItemTrie

    trie = ItemTrie.from_tokenizer(engine.tokenizer, TITLES)
    p = prompt_ids(engine)
    beams = beam_search(engine, [p], len(TITLES), 30, trie.make_allowed_fn())[0]
    titles = [trie.decode_item(b.token_ids) for b in beams]
    assert None not in titles and len(set(titles)) == len(titles)
    # every item's exact score = sum of FULL-vocabulary logprobs of its tokens (no
    # renormalisation over the allowed set); with num_beams >= #items the search finds all
    exact = {}
    for t in TITLES:
        ids = engine.tokenizer.encode(f'"{t}"\n', add_special_tokens=False)
        ids.append(engine.tokenizer.eos_token_id)
        exact[t] = sum(manual_logprobs(engine.model, p + ids, len(p)))
    for b, t in zip(beams, titles, strict=True):
        assert b.score == pytest.approx(exact[t], abs=1e-3)
        assert b.token_ids[-1] == engine.tokenizer.eos_token_id
    assert sorted(titles) == sorted(TITLES)
    assert titles == sorted(TITLES, key=lambda t: -exact[t])  # best first
    # fewer beams (an approximate search): still distinct catalogue items, exact scores, sorted
    top2 = beam_search(engine, [p], 2, 30, trie.make_allowed_fn())[0]
    got = [trie.decode_item(b.token_ids) for b in top2]
    assert len(set(got)) == 2 and set(got) <= set(TITLES)
    assert [b.score for b in top2] == pytest.approx([exact[t] for t in got], abs=1e-3)
    assert top2[0].score >= top2[1].score


def test_unconstrained_beam_search_beats_greedy(engine):
    p = prompt_ids(engine)
    beams = beam_search(engine, [p], 3, 6)[0]
    greedy = engine.generate([p], SamplingConfig(temperature=0.0, max_tokens=6))[0][0]
    assert beams == sorted(beams, key=lambda b: -b.score)
    assert beams[0].score >= sum(greedy.logprobs) - 1e-4


def test_load_weights_replaces_model_and_version(engine, ckpt, tmp_path):
    from safetensors.torch import save
    from transformers import AutoModelForCausalLM

    other = AutoModelForCausalLM.from_pretrained(str(ckpt))
    torch.manual_seed(7)
    with torch.no_grad():
        for prm in other.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    blob = save({k: v.clone().contiguous() for k, v in other.state_dict().items()})
    seq = prompt_ids(engine, "hello there")
    before = engine.score([seq], [1])[0]
    engine.load_weights(blob, version=5)
    assert engine.version == 5
    after = engine.score([seq], [1])[0]
    assert after == pytest.approx(manual_logprobs(other, seq, 1), abs=1e-5)
    assert after != pytest.approx(before, abs=1e-3)
