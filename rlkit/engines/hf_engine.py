"""HFEngine: the transformers fallback behind the RolloutEngine Protocol (no vLLM needed).

Used where vLLM is unavailable or for exactness checks; it is slow (one prompt at a time) but
numerically the plain transformers forward. What it returns:

- `generate`: `transformers.generate` per prompt with `num_return_sequences = n`. The logprob of
  each sampled token is read from the RAW model logits: log_softmax(logits / 1) at that step,
  i.e. before temperature, top-p and top-k (the unscaled model distribution; vLLM's default
  `logprobs_mode="raw_logprobs"` reports the same quantity).
- `beam_search`: a hand-written beam search so that the ReRe constraint is exact (arXiv
  2510.12211, docs/algorithms.md §6): log-softmax over the FULL vocabulary first, then every token
  outside `allowed_tokens(prefix)` gets -inf; beams are ranked by the cumulative full-vocabulary
  logprob (length_penalty 0, no renormalisation over the allowed set).
- `score`: one prefill forward, log_softmax gathered at the given tokens.
- `load_weights`: `safetensors.torch.load(bytes)` of a full state dict.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from rlkit.engines.rollout_protocol import (
    AllowedTokensFn,
    BeamResult,
    Completion,
    SamplingConfig,
)


class HFEngine:
    """A transformers causal LM serving generate / beam_search / score on one device."""

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "float32",
        device: str = "cpu",
        seed: int = 0,
        tokenizer: Any | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = str(model_path)
        self.device = torch.device(device)
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=getattr(torch, dtype)
        ).to(self.device)
        self.model.eval()
        if tokenizer is None:
            tokenizer = _try_tokenizer(AutoTokenizer, self.model_path)
        self.tokenizer = tokenizer
        self.eos_token_ids = _eos_ids(self.model, self.tokenizer)
        self.pad_token_id = _pad_id(self.model, self.tokenizer, self.eos_token_ids)
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

    def beam_search(
        self,
        prompts: Sequence[Sequence[int]],
        num_beams: int,
        max_tokens: int,
        allowed_tokens: AllowedTokensFn | None = None,
    ) -> list[list[BeamResult]]:
        """Constrained beam search per prompt (see `beam_search_one`), best first."""
        out = []
        for prompt in prompts:
            beams = beam_search_one(
                self._step_fn(),
                list(prompt),
                num_beams,
                max_tokens,
                allowed_tokens,
                self.eos_token_ids,
            )
            out.append([BeamResult(ids, self._decode(ids), score) for ids, score in beams])
        return out

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

    def load_weights(self, state_dict_bytes: bytes, version: int) -> None:
        """Replace all weights from safetensors bytes (a full state dict) and set `version`."""
        from safetensors.torch import load

        state = load(state_dict_bytes)
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

    def _step_fn(self):
        """A `StepFn` for `beam_search_one`: full-vocab log-softmax with a KV cache."""
        import torch

        model = self.model

        def step(input_ids, cache, beam_idx):
            if cache is not None and beam_idx is not None:
                cache.reorder_cache(torch.tensor(beam_idx, device=self.device))
            ids = torch.tensor(input_ids, device=self.device)
            with torch.no_grad():
                out = model(input_ids=ids, past_key_values=cache, use_cache=True)
            return out.logits[:, -1].float().log_softmax(-1), out.past_key_values

        return step

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


def beam_search_one(
    step: Any,
    prompt: list[int],
    num_beams: int,
    max_tokens: int,
    allowed: AllowedTokensFn | None,
    eos_ids: Sequence[int],
) -> list[tuple[list[int], float]]:
    """Beam search for one prompt; returns (response ids, cumulative logprob), best first.

    `step(input_ids, cache, beam_idx) -> (logprobs (B, V), cache)` gives the FULL-vocabulary
    log-softmax of the next token for each live beam (`beam_idx` reorders the cache first).
    Per step, each live beam proposes its 2*num_beams best allowed tokens (tokens outside
    `allowed(prefix)` are -inf; an empty allowed list means EOS only); all proposals are ranked
    by score = sum of full-vocab logprobs (length_penalty 0), EOS proposals ranked above the
    num_beams-th live beam become finished, the best num_beams others stay live. Since scores
    only decrease, the search stops once num_beams beams finished and no live beam beats the
    worst of them. Distinct finished beams come first; if fewer than num_beams finished within
    `max_tokens`, the best unfinished beams fill up the list (they end without EOS).
    """
    eos = set(int(e) for e in eos_ids)
    logp, cache = step([prompt], None, None)
    live: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[list[int], float]] = []
    for _ in range(max_tokens):
        cands = _proposals(logp, live, num_beams, allowed, eos_ids)
        new_live: list[tuple[list[int], float]] = []
        parents: list[int] = []
        for sc, b, tok in cands:
            if len(new_live) == num_beams:
                break
            if tok in eos:
                finished.append(([*live[b][0], tok], sc))
            else:
                new_live.append(([*live[b][0], tok], sc))
                parents.append(b)
        live = new_live
        if not live or _done(finished, live, num_beams):
            break
        logp, cache = step([[toks[-1]] for toks, _ in live], cache, parents)
    return _best(finished, live, num_beams)


def _proposals(logp: Any, live: list, num_beams: int, allowed: Any, eos_ids: Sequence[int]):
    """(score, beam index, token) candidates of every live beam, best first (stable)."""
    import torch

    cands: list[tuple[float, int, int]] = []
    k = 2 * num_beams
    for b, (toks, score) in enumerate(live):
        row = logp[b]
        if allowed is None:
            vals, idx = row.topk(min(k, row.numel()))
            pairs = zip(idx.tolist(), vals.tolist(), strict=True)
        else:
            ok = [int(t) for t in allowed(toks)] or [int(eos_ids[0])]
            vals = row[torch.tensor(ok, device=row.device)]
            top_v, top_i = vals.topk(min(k, len(ok)))
            pairs = ((ok[i], v) for i, v in zip(top_i.tolist(), top_v.tolist(), strict=True))
        cands.extend((score + v, b, t) for t, v in pairs if v != float("-inf"))
    cands.sort(key=lambda c: -c[0])
    return cands


def _done(finished: list, live: list, num_beams: int) -> bool:
    """True when num_beams beams finished and the best live beam cannot beat the worst of them."""
    if len(finished) < num_beams:
        return False
    kth = sorted((s for _, s in finished), reverse=True)[num_beams - 1]
    return max(s for _, s in live) <= kth


def _best(finished: list, live: list, num_beams: int) -> list[tuple[list[int], float]]:
    """Distinct finished beams best first, topped up with the best unfinished ones."""
    out: list[tuple[list[int], float]] = []
    seen: set[tuple[int, ...]] = set()
    for group in (finished, live):
        for toks, sc in sorted(group, key=lambda x: -x[1]):
            if len(out) < num_beams and tuple(toks) not in seen:
                seen.add(tuple(toks))
                out.append((toks, sc))
    return out
