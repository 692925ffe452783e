"""Data for rlkit: prompt datasets, the synthetic arithmetic task, and the quickstart's tiny model.

Submodules import heavy libraries (torch, transformers, tokenizers, datasets) lazily, so that
`import rlkit.data` stays light:

- `tiny_model`: a character-level tokenizer and a random-init tiny Qwen2 saved as an HF folder.
- `arithmetic`: deterministic "a+b=" prompts with `\\boxed{}` answers; JSONL/parquet/hub loading.
- `sft`: a single-process supervised warm start (completion-only loss, atomic save).
- `quickstart`: builds all quickstart assets (model, data, SFT) with the tuned defaults.
"""
