"""Constrained beam search: one algorithm for every engine, batched over prompts (ReRe).

ReRe (arXiv 2510.12211, docs/algorithms.md §6, docs/rere.md) ranks beams by the summed
FULL-vocabulary log-softmax of their tokens and keeps every beam inside the catalogue trie. The
reference is transformers' `generate(num_beams=G, num_return_sequences=G, do_sample=False,
length_penalty=0.0, prefix_allowed_tokens_fn=trie)` (transformers 5.19,
`GenerationMixin._beam_search`, `early_stopping` at its default False). Per prompt and step t:

1. every running beam b (score s_b) proposes its allowed tokens v with s_b + log p(v | prefix_b)
   (float32 sums, as transformers); K = max(2, 1 + #eos ids) * G best proposals over all beams
   are kept, best first. Exact ties are ordered by (beam slot, token id) ascending (torch.topk
   leaves tie order unspecified; ours is deterministic).
2. a proposal "hits" when its token is an EOS id, or, at the last step (t + 1 = max_tokens),
   always. Hits among the first G of the K become finished hypotheses; hits beyond are dropped.
3. the first G non-hits become the running beams (fewer when fewer exist).
4. the finished set keeps the G best (existing ones first on ties).
5. stop when no beam runs, at max_tokens, or when G hypotheses finished and the best running
   score is <= the worst finished one (length_penalty 0: scores only decrease).

transformers pads missing beams with placeholders scored about -1e9 (its dummy initial beams);
they never outrank a real hypothesis, and this implementation does not create them: with fewer
than G valid items it returns fewer than G beams. Beams cut at max_tokens may lack the EOS.

Engines supply `next_token_logprobs(prefixes, candidates, top_k)`: for each prefix the
full-vocabulary log-softmax of its candidate next tokens (or of the engine's top-k tokens when a
candidate list is None, the unconstrained case); an engine may also offer `beam_scorer()`, the
same function with state kept for one search (`search_scorer`). `BeamSearch` is a per-prompt
state machine (`requests` / `advance`) so a request loop can drive it step by step;
`run_beam_searches` drives many prompts with ONE scorer call per decoding step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rlkit.methods.rere.item_trie import ItemTrie

# A legacy constraint: the token ids generated so far (response only) -> the allowed next ids
# (an empty list means "only EOS").
AllowedTokensFn = Callable[[Sequence[int]], Sequence[int]]
# (prefixes, candidate ids per prefix or None, top_k) -> {token id: full-vocab logprob} per prefix
NextTokenScorer = Callable[[list[list[int]], list[list[int] | None], int], list[dict[int, float]]]


@dataclass
class BeamResult:
    """One returned beam: response token ids (EOS included when it finished), text (EOS
    stripped) and score = the summed full-vocabulary log-softmax of its tokens."""

    token_ids: list[int]
    text: str = ""
    score: float = 0.0


class Constraint(Protocol):
    """Which tokens may follow a beam, tracked through an opaque per-beam state."""

    def start(self) -> Any: ...

    def allowed(self, state: Any) -> list[int] | None: ...  # None: any token

    def advance(self, state: Any, token: int) -> Any: ...


class TrieConstraint:
    """Children of the beam's trie node; EOS only once a path is complete or left the trie."""

    def __init__(self, trie: Any) -> None:
        self.trie = trie

    def start(self) -> Any:
        return self.trie.root

    def allowed(self, state: Any) -> list[int]:
        kids = self.trie.children(state) if state is not None else []
        return kids or [self.trie.eos_token_id]

    def advance(self, state: Any, token: int) -> Any:
        return None if state is None else self.trie.child(state, token)


class CallableConstraint:
    """Legacy `allowed_tokens(response_ids)`; an empty answer means EOS only."""

    def __init__(self, fn: AllowedTokensFn, eos_token_id: int) -> None:
        self.fn, self.eos = fn, int(eos_token_id)

    def start(self) -> tuple[int, ...]:
        return ()

    def allowed(self, state: tuple[int, ...]) -> list[int]:
        return sorted({int(t) for t in self.fn(list(state))}) or [self.eos]

    def advance(self, state: tuple[int, ...], token: int) -> tuple[int, ...]:
        return (*state, token)


class NoConstraint:
    """Unconstrained beam search (the engine proposes its top-k tokens)."""

    def start(self) -> None:
        return None

    def allowed(self, state: Any) -> None:
        return None

    def advance(self, state: Any, token: int) -> None:
        return None


@dataclass(frozen=True)
class Hypothesis:
    """A beam: response token ids, summed full-vocab logprob (a float32 value), constraint state."""

    tokens: tuple[int, ...]
    score: float
    state: Any = None


class BeamSearch:
    """transformers' beam search for ONE prompt as a state machine (see the module docstring)."""

    def __init__(
        self,
        prompt: Sequence[int],
        num_beams: int,
        max_tokens: int,
        eos_token_ids: Sequence[int],
        constraint: Constraint,
    ) -> None:
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        self.prompt = [int(t) for t in prompt]
        self.num_beams, self.max_tokens = num_beams, max_tokens
        self.eos = frozenset(int(e) for e in eos_token_ids)
        self.k = max(2, 1 + len(self.eos)) * num_beams
        self.constraint = constraint
        self.running = [Hypothesis((), 0.0, constraint.start())]
        self.finished: list[Hypothesis] = []
        self.steps = 0
        self.done = max_tokens <= 0
        self._allowed: list[list[int] | None] = []

    def requests(self) -> list[tuple[list[int], list[int] | None]]:
        """(prompt + beam tokens, allowed next ids or None) for every running beam."""
        self._allowed = [self.constraint.allowed(h.state) for h in self.running]
        return [(self.prompt + list(h.tokens), a) for h, a in zip(self.running, self._allowed)]

    def advance(self, logprobs: Sequence[Mapping[int, float]]) -> None:
        """One decoding step from the engine's answers to `requests()` (same order)."""
        last = self.steps + 1 >= self.max_tokens
        running: list[Hypothesis] = []
        new_finished: list[Hypothesis] = []
        for pos, (score, slot, tok) in enumerate(self._top_candidates(logprobs)):
            if tok in self.eos or last:
                if pos < self.num_beams:
                    new_finished.append(self._extend(slot, tok, score))
            elif len(running) < self.num_beams:
                running.append(self._extend(slot, tok, score))
        merged = sorted([*self.finished, *new_finished], key=lambda h: -h.score)  # stable
        self.finished = merged[: self.num_beams]
        self.running = running
        self.steps += 1
        self.done = last or not running or self._cannot_improve()

    def results(self) -> list[tuple[list[int], float]]:
        """Finished hypotheses (response ids, score), best first, at most num_beams."""
        return [(list(h.tokens), h.score) for h in self.finished]

    def _extend(self, slot: int, tok: int, score: float) -> Hypothesis:
        parent = self.running[slot]
        state = self.constraint.advance(parent.state, tok)
        return Hypothesis((*parent.tokens, tok), score, state)

    def _cannot_improve(self) -> bool:
        """transformers' early-stop heuristic with length_penalty 0 and early_stopping False."""
        full = len(self.finished) == self.num_beams
        return full and self.running[0].score <= self.finished[-1].score

    def _top_candidates(self, logprobs: Sequence[Mapping[int, float]]) -> list[tuple]:
        """The K best (float32 score, beam slot, token), ties by (slot, token) ascending."""
        scores, slots, toks = [], [], []
        for slot, (hyp, lp) in enumerate(zip(self.running, logprobs, strict=True)):
            allowed = self._allowed[slot]
            ids = sorted(lp) if allowed is None else allowed
            if not ids:
                continue
            vals = np.array([lp[t] for t in ids], dtype=np.float32)
            scores.append(np.float32(hyp.score) + vals)
            slots.append(np.full(len(ids), slot, dtype=np.int64))
            toks.append(np.asarray(ids, dtype=np.int64))
        if not scores:
            return []
        score, slot, tok = np.concatenate(scores), np.concatenate(slots), np.concatenate(toks)
        ok = np.isfinite(score)
        score, slot, tok = score[ok], slot[ok], tok[ok]
        order = np.lexsort((tok, slot, -score))[: self.k]
        return list(zip(score[order].tolist(), slot[order].tolist(), tok[order].tolist()))


def run_beam_searches(scorer: NextTokenScorer, searches: Sequence[BeamSearch]) -> None:
    """Drive every search to completion: one scorer call per step for all live beams."""
    while live := [s for s in searches if not s.done]:
        per_search = [s.requests() for s in live]
        flat = [r for reqs in per_search for r in reqs]
        top_k = max(s.k for s in live)
        out = scorer([p for p, _ in flat], [c for _, c in flat], top_k)
        start = 0
        for search, reqs in zip(live, per_search):
            search.advance(out[start : start + len(reqs)])
            start += len(reqs)


def make_constraint(
    eos_token_id: int,
    allowed_tokens: AllowedTokensFn | None = None,
    allowed_sequences: Any = None,
) -> Constraint:
    """A trie over `allowed_sequences` (token-id lists or a prebuilt ItemTrie), else the legacy
    callable, else no constraint."""
    if allowed_sequences is not None:
        if isinstance(allowed_sequences, ItemTrie):
            return TrieConstraint(allowed_sequences)
        if not len(allowed_sequences):
            raise ValueError("allowed_sequences is empty: no response is valid")
        return TrieConstraint(ItemTrie.from_sequences(allowed_sequences, eos_token_id))
    if allowed_tokens is not None:
        return CallableConstraint(allowed_tokens, eos_token_id)
    return NoConstraint()


def constrained_beam_search(
    scorer: NextTokenScorer,
    prompts: Sequence[Sequence[int]],
    num_beams: int,
    max_tokens: int,
    *,
    eos_token_ids: Sequence[int],
    allowed_tokens: AllowedTokensFn | None = None,
    allowed_sequences: Any = None,
    decode: Callable[[list[int]], str] | None = None,
) -> list[list[BeamResult]]:
    """Beam search for every prompt (see the module docstring); per prompt, best first.

    `eos_token_ids[0]` is the EOS the allowed sequences end with; all ids stop a beam.
    """
    constraint = make_constraint(eos_token_ids[0], allowed_tokens, allowed_sequences)
    searches = [BeamSearch(p, num_beams, max_tokens, eos_token_ids, constraint) for p in prompts]
    run_beam_searches(scorer, searches)
    eos = set(eos_token_ids)
    return [
        [
            BeamResult(ids, decode([t for t in ids if t not in eos]) if decode else "", score)
            for ids, score in s.results()
        ]
        for s in searches
    ]


def beam_search(
    engine: Any,
    prompts: Sequence[Sequence[int]],
    num_beams: int,
    max_tokens: int,
    allowed_tokens: AllowedTokensFn | None = None,
    *,
    allowed_sequences: Any = None,
) -> list[list[BeamResult]]:
    """Constrained beam search on a rollout engine (vLLM or HF), best first per prompt.

    `allowed_sequences`: every complete response as token ids ending with the tokenizer's EOS
    (or a prebuilt `ItemTrie`); each beam is a path of their prefix trie. The result equals
    transformers `generate(num_beams=G, num_return_sequences=G, do_sample=False,
    length_penalty=0.0, prefix_allowed_tokens_fn=<that trie>)`, scores = summed full-vocabulary
    log-softmax (module docstring). The engine supplies `next_token_logprobs` and `tokenizer`;
    it must have no live requests (a rollout worker serves beam jobs once it is idle)."""
    tok = engine.tokenizer
    return constrained_beam_search(
        search_scorer(engine),
        prompts,
        num_beams,
        max_tokens,
        eos_token_ids=engine_eos_ids(engine),
        allowed_tokens=allowed_tokens,
        allowed_sequences=allowed_sequences,
        decode=None if tok is None else lambda ids: tok.decode(ids, skip_special_tokens=True),
    )


def search_scorer(engine: Any) -> NextTokenScorer:
    """The engine's scorer for one whole search: its `beam_scorer()` when it has one (the HF
    engine's keeps the KV cache between steps), else `next_token_logprobs` (vLLM reuses the
    beams' prefixes through its own prefix cache)."""
    make = getattr(engine, "beam_scorer", None)
    return make() if callable(make) else engine.next_token_logprobs


def engine_eos_ids(engine: Any) -> list[int]:
    """The EOS ids beam search stops at: what `generate` uses (the model's generation config),
    the tokenizer's EOS first (the id the trie's sequences end with)."""
    first = getattr(engine.tokenizer, "eos_token_id", None)
    if first is None and getattr(engine, "eos_token_ids", None):  # HF engine, no tokenizer
        first = engine.eos_token_ids[0]
    return generation_eos_ids(engine.model_path, first)


def generation_eos_ids(model_path: str, tokenizer_eos: int | None) -> list[int]:
    """The EOS ids `generate` stops at (generation_config.json, else config.json), with the
    tokenizer's EOS first (the id the allowed sequences end with)."""
    ids: list[int] = [] if tokenizer_eos is None else [int(tokenizer_eos)]
    try:
        from transformers import GenerationConfig

        val = GenerationConfig.from_pretrained(model_path).eos_token_id
    except (OSError, ValueError):
        val = None
    if val is None:
        try:
            from transformers import AutoConfig

            val = getattr(AutoConfig.from_pretrained(model_path), "eos_token_id", None)
        except (OSError, ValueError):
            val = None
    for v in val if isinstance(val, (list, tuple)) else [val]:
        if v is not None and int(v) not in ids:
            ids.append(int(v))
    if not ids:
        raise ValueError(f"{model_path}: no eos_token_id in the tokenizer or the model config")
    return ids


def transformers_reference(
    model: Any, prompt: Sequence[int], trie: Any, num_beams: int, max_tokens: int
) -> list[tuple[list[int], float]]:
    """The contract, executed: transformers `generate(num_beams=G, num_return_sequences=G,
    do_sample=False, length_penalty=0.0, prefix_allowed_tokens_fn=trie)` for one prompt, as
    (response ids, summed full-vocab logprob), best first, placeholder beams (<= -1e8) dropped.
    G = 1 is transformers' greedy search (its score is summed from the raw logits)."""
    import torch

    eos = trie.eos_token_id
    plen = len(prompt)

    def allowed(_batch_id: int, ids: Any) -> list[int]:
        return trie.allowed(ids[plen:].tolist()) or [eos]

    ids = torch.tensor([list(prompt)], device=model.device)
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            num_beams=num_beams,
            num_return_sequences=num_beams,
            do_sample=False,
            length_penalty=0.0,
            prefix_allowed_tokens_fn=allowed,
            max_new_tokens=max_tokens,
            output_scores=True,
            output_logits=True,
            return_dict_in_generate=True,
        )
    if num_beams == 1:
        toks = out.sequences[0, plen:].tolist()
        toks = toks[: toks.index(eos) + 1] if eos in toks else toks
        steps = [out.logits[j][0].float().log_softmax(-1)[t].item() for j, t in enumerate(toks)]
        return [(toks, float(np.float32(sum(steps))))]
    res = []
    for seq, score, bidx in zip(out.sequences, out.sequences_scores, out.beam_indices):
        n = int((bidx != -1).sum())
        if score.item() > -1e8:
            res.append((seq[plen : plen + n].tolist(), score.item()))
    return res
