"""HFEngine: the transformers fallback behind the RolloutEngine Protocol (no vLLM needed).

Used where vLLM is unavailable or for exactness checks; it is slow but
numerically the plain transformers forward. What it returns:

- `generate`: `transformers.generate` per prompt with `num_return_sequences = n`. The logprob of
  each sampled token is read from the RAW model logits: log_softmax(logits / 1) at that step,
  i.e. before temperature, top-p and top-k (the unscaled model distribution; vLLM's default
  `logprobs_mode="raw_logprobs"` reports the same quantity).
- `next_token_logprobs`: the full-vocabulary log-softmax of the next token per prefix (one
  batched forward over all prefixes, left-padded, every prefix prefilled).
- `beam_scorer()`: the same scoring for a step-by-step search, keeping the KV cache between
  calls so that a beam extended by one token costs one token (rlkit.engines.prefix_kv_scorer).
- `score`: one prefill forward, log_softmax gathered at the given tokens.
- `load_weights`: `safetensors.torch.load(bytes)` of a full state dict.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from rlkit.engines.prefix_kv_scorer import PrefixKVScorer
from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.engines.shared_prompt_attention import register_gqa_sdpa


class HFEngine:
    """A transformers causal LM serving generate / next-token logprobs / score on one device."""

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "float32",
        device: str = "cpu",
        seed: int = 0,
        tokenizer: Any | None = None,
        max_batch_tokens: int = 8192,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = str(model_path)
        self.device = torch.device(device)
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=getattr(torch, dtype), attn_implementation=register_gqa_sdpa()
        ).to(self.device)
        self.model.eval()
        if tokenizer is None:
            tokenizer = _try_tokenizer(AutoTokenizer, self.model_path)
        self.tokenizer = tokenizer
        self.eos_token_ids = _eos_ids(self.model, self.tokenizer)
        self.pad_token_id = _pad_id(self.model, self.tokenizer, self.eos_token_ids)
        self.max_batch_tokens = max_batch_tokens
        self._rng = random.Random(seed)
        self._version = 0

    # ------------------------------------------------------------------ Protocol
    @property
    def version(self) -> int:
        """Policy version of the weights held (0 until `load_weights`)."""
        return self._version

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        """`sampling.n` completions per prompt; temperature 0 means greedy."""
        base = sampling.seed if sampling.seed is not None else self._rng.randrange(2**31)
        return [self._generate_one(list(p), sampling, base + i) for i, p in enumerate(prompts)]

    def next_token_logprobs(
        self,
        prefixes: Sequence[Sequence[int]],
        candidates: Sequence[Sequence[int] | None],
        top_k: int = 20,
    ) -> list[dict[int, float]]:
        """Full-vocabulary log-softmax of the next token after each prefix, read at its
        candidate ids (at its `top_k` best tokens when None). Prefixes share left-padded
        forwards of at most `max_batch_tokens` tokens (padding masked, true positions: each row
        is the unbatched computation up to float reduction order). Stateless: every prefix is
        prefilled."""
        return self.beam_scorer()(prefixes, candidates, top_k)

    def beam_scorer(self) -> PrefixKVScorer:
        """A scorer for one step-by-step search: `next_token_logprobs` that keeps the KV cache
        of the prefixes it scored, so a prefix extending one of the previous call's by a token
        costs one token (rlkit.engines.prefix_kv_scorer). Drop it when the search ends."""
        return PrefixKVScorer(self.model, self.device, self.max_batch_tokens)

    def score(self, sequences: Sequence[Sequence[int]], start: Sequence[int]) -> list[list[float]]:
        """log p(seq[j] | seq[:j]) for j in [start, len(seq)), one prefill per sequence."""
        import torch

        out: list[list[float]] = []
        for seq, s in zip(sequences, start, strict=True):
            if s < 1:
                raise ValueError("score: start must be >= 1 (the first token has no prefix)")
            ids = torch.tensor([list(seq)], device=self.device)
            with torch.no_grad():
                logits = self.model(input_ids=ids).logits[0, s - 1 : -1].float()
            lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[0, s:, None])[:, 0]
            out.append(lp.tolist())
        return out

    def sleep(self) -> None:
        """GPU hybrid engine: the model to host memory (nothing to do on CPU)."""
        self._device = next(self.model.parameters()).device
        self.model.to("cpu")

    def wake_up(self) -> None:
        self.model.to(getattr(self, "_device", "cpu"))

    def load_weights(self, weights: bytes | str, version: int) -> None:
        """Replace all weights (a full state dict: safetensors bytes or a file's path) and set
        `version`."""
        from rlkit.engines.model_io import load_weights_state

        state = load_weights_state(weights)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = {"lm_head.weight"} if self.model.config.tie_word_embeddings else set()
        missing = [k for k in missing if k not in tied]
        if missing or unexpected:
            raise ValueError(f"load_weights: missing keys {missing}, unexpected keys {unexpected}")
        self._version = int(version)

    # ------------------------------------------------------------------ internals
    def _generate_one(
        self, prompt: list[int], sampling: SamplingConfig, seed: int
    ) -> list[Completion]:
        """`transformers.generate` for one prompt, then cut at the first stop token."""
        import torch
        from transformers import GenerationConfig

        greedy = sampling.temperature <= 0
        stops = list(dict.fromkeys([*self.eos_token_ids, *sampling.stop_token_ids]))
        cfg = GenerationConfig(
            max_new_tokens=sampling.max_tokens,
            do_sample=not greedy,
            # Every knob explicit: generate() fills unset (None) values from the checkpoint's
            # generation_config (e.g. repetition_penalty) and then global defaults (top_k=50).
            temperature=1.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=0 if greedy or sampling.top_k <= 0 else sampling.top_k,
            repetition_penalty=1.0,
            num_return_sequences=sampling.n,
            eos_token_id=stops,
            pad_token_id=self.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        ids = torch.tensor([prompt], device=self.device)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            out = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=cfg
            )
        new = out.sequences[:, len(prompt) :]
        logp = torch.stack(out.logits, dim=1).float().log_softmax(-1)  # (n, steps, V)
        tok_lp = logp.gather(-1, new[:, : logp.shape[1], None])[..., 0]
        return [
            self._completion(new[i].tolist(), tok_lp[i].tolist(), stops) for i in range(len(new))
        ]

    def _completion(self, ids: list[int], lps: list[float], stops: list[int]) -> Completion:
        """Cut at the first stop token (kept, as vLLM keeps it in token_ids)."""
        for j, tok in enumerate(ids):
            if tok in stops:
                return Completion(ids[: j + 1], lps[: j + 1], self._decode(ids[: j + 1]), "stop")
        return Completion(ids, lps, self._decode(ids), "length")

    def _decode(self, ids: list[int]) -> str:
        """Text of `ids` without special tokens ("" when no tokenizer could be loaded)."""
        if self.tokenizer is None:
            return ""
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _try_tokenizer(auto_cls: Any, path: str) -> Any | None:
    """The folder's tokenizer, or None (the engine works on token ids alone)."""
    try:
        return auto_cls.from_pretrained(path)
    except (OSError, ValueError):
        return None


def _eos_ids(model: Any, tokenizer: Any | None) -> list[int]:
    """Stop ids: generation_config's eos id(s), then the config's, then the tokenizer's."""
    ids: list[int] = []
    for src in (getattr(model, "generation_config", None), model.config, tokenizer):
        val = getattr(src, "eos_token_id", None) if src is not None else None
        for v in val if isinstance(val, (list, tuple)) else [val]:
            if v is not None and int(v) not in ids:
                ids.append(int(v))
    return ids


def _pad_id(model: Any, tokenizer: Any | None, eos: list[int]) -> int:
    """A pad id for `generate` (only fills finished rows): pad, else the first eos, else 0."""
    for src in (tokenizer, model.config):
        val = getattr(src, "pad_token_id", None) if src is not None else None
        if val is not None:
            return int(val)
    return eos[0] if eos else 0
