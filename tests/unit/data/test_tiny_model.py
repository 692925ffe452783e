"""The quickstart tokenizer and tiny model: round trips, HF folder layout, loading, generation."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rlkit.data.arithmetic import format_target, make_arithmetic_dataset  # noqa: E402
from rlkit.data.tiny_model import (  # noqa: E402
    EOS_TOKEN,
    PAD_TOKEN,
    build_char_tokenizer,
    build_tiny_model,
)

TEXTS = ["12+7=", "\\boxed{19}", "3-15=\\boxed{-12}", "line one\nline  two\tx", "a ~!@#$%^&*()_"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_tokenizer_round_trips_task_text():
    tok = build_char_tokenizer()
    rows = make_arithmetic_dataset(50, seed=3, ops="+-*")
    for text in TEXTS + [r["prompt"] + format_target(r) for r in rows]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
        assert tok.unk_token_id not in ids
    # one token per ASCII character, so prompt/completion boundaries are exact
    assert len(tok("12+7=\\boxed{19}")["input_ids"]) == len("12+7=\\boxed{19}")


def test_tokenizer_is_deterministic_and_has_specials():
    a, b = build_char_tokenizer(), build_char_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    assert a.pad_token == PAD_TOKEN and a.eos_token == EOS_TOKEN
    assert a.pad_token_id != a.eos_token_id
    ids = a("1+1=", add_special_tokens=False)["input_ids"] + [a.eos_token_id]
    assert a.decode(ids, skip_special_tokens=True) == "1+1="


def test_restricted_alphabet_shrinks_vocab():
    small = build_char_tokenizer("0123456789+-=\\boxed{}")
    assert len(small) < len(build_char_tokenizer())
    assert small.decode(small("12+7=\\boxed{19}")["input_ids"]) == "12+7=\\boxed{19}"


def test_saved_folder_has_configs_with_eos_and_pad(model_dir):
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "config.json",
        "generation_config.json",
    ):
        assert (model_dir / name).is_file(), name
    cfg = json.loads((model_dir / "config.json").read_text())
    gen = json.loads((model_dir / "generation_config.json").read_text())
    tok = build_char_tokenizer()
    assert cfg["model_type"] == "qwen2"
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == 64
    for c in (cfg, gen):
        assert c["eos_token_id"] == tok.eos_token_id and c["pad_token_id"] == tok.pad_token_id


def test_reloaded_tokenizer_matches_built_one(model_dir):
    from transformers import AutoTokenizer

    loaded, built = AutoTokenizer.from_pretrained(model_dir), build_char_tokenizer()
    for text in TEXTS:
        assert loaded(text)["input_ids"] == built(text)["input_ids"]
        assert loaded.decode(built(text)["input_ids"]) == text
    assert loaded.eos_token_id == built.eos_token_id


def test_model_loads_and_generates(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert next(model.parameters()).dtype == torch.float32
    enc = tok(["12+7=", "3+4="], return_tensors="pt", padding=True)
    out = model.generate(**enc, do_sample=False, max_new_tokens=5)
    n_prompt = enc["input_ids"].shape[1]
    assert out.shape[0] == 2 and n_prompt < out.shape[1] <= n_prompt + 5
    assert (out[:, :n_prompt] == enc["input_ids"]).all()


def test_same_seed_same_weights(tmp_path):
    from safetensors.torch import load_file

    a = load_file(build_tiny_model(tmp_path / "a", seed=1) / "model.safetensors")
    b = load_file(build_tiny_model(tmp_path / "b", seed=1) / "model.safetensors")
    c = load_file(build_tiny_model(tmp_path / "c", seed=2) / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    assert any((a[k] != c[k]).any() for k in a)


def test_head_dim_other_than_64_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="head_dim"):
        build_tiny_model(tmp_path / "m", hidden_size=64, num_heads=4)
