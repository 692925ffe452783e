"""Tiny random reward models for CPU recipes and tests, made locally like the quickstart's
policy (rlkit.data.tiny_model): the same Qwen2 shapes and byte-level tokenizer, no downloads.
A judge is a tiny causal LM; a classifier a tiny ``Qwen2ForSequenceClassification`` with one
label (its score head random-init, so scores are arbitrary but deterministic)."""

from __future__ import annotations

from pathlib import Path

from rlkit.config.schema import TinyModelConfig


def build_tiny_reward_model(out_dir: str | Path, kind: str, t: TinyModelConfig) -> Path:
    """An HF folder for a `reward.models` entry with `tiny:` (kept when already built)."""
    from rlkit.data.tiny_model import build_char_tokenizer, build_tiny_model, tiny_qwen2_config

    out = Path(out_dir)
    if (out / "config.json").is_file():
        return out
    shape = {
        "hidden_size": t.hidden_size,
        "num_layers": t.num_layers,
        "num_heads": t.num_heads,
        "intermediate_size": t.intermediate_size,
    }
    if kind == "judge":
        return build_tiny_model(out, seed=t.seed, **shape)
    import torch
    from transformers import Qwen2ForSequenceClassification

    tok = build_char_tokenizer()
    cfg = tiny_qwen2_config(
        len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        **shape,
    )
    cfg.num_labels = 1
    torch.manual_seed(t.seed)
    model = Qwen2ForSequenceClassification(cfg).to(torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
