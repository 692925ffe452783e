"""Beam search driven step by step through an engine's next-token scoring, with constraints.

Why our own loop: ReRe ranks beams by the FULL-vocabulary log-softmax of the allowed tokens (not
renormalised over the allowed set), and every beam must stay inside the catalogue trie.  One
scoring call per decoding step asks the engine for the logprobs of exactly the allowed tokens of
every live beam (vLLM: `SamplingParams(logprob_token_ids=...)`, with prefix caching making the
shared prefixes nearly free).  Length penalty is 0: beams are ranked by their summed logprob.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

from rlkit.engines.rollout_protocol import AllowedTokensFn, BeamResult

# (prefixes, candidate ids per prefix) -> {token id: full-vocab logprob} per prefix
NextTokenScorer = Callable[[Sequence[Sequence[int]], Sequence[Sequence[int] | None]], list[dict]]


def beam_search_one(
    scorer: NextTokenScorer,
    prompt: Sequence[int],
    num_beams: int,
    max_tokens: int,
    eos_id: int,
    allowed_tokens: AllowedTokensFn | None,
    decode: Callable[[list[int]], str],
) -> list[BeamResult]:
    """Beam search for one prompt; returns up to `num_beams` finished beams, best first."""
    live: list[tuple[float, list[int]]] = [(0.0, [])]
    finished: list[tuple[float, list[int]]] = []
    for _ in range(max_tokens):
        if not live:
            break
        allowed = [None if allowed_tokens is None else list(allowed_tokens(r)) for _, r in live]
        allowed = [a if a is None or a else [eos_id] for a in allowed]
        scores = scorer([list(prompt) + r for _, r in live], allowed)
        candidates = [
            (score + lp, resp + [tok])
            for (score, resp), token_lps in zip(live, scores)
            for tok, lp in token_lps.items()
        ]
        best = heapq.nlargest(num_beams, candidates, key=lambda c: c[0])
        live = []
        for score, resp in best:
            (finished if resp[-1] == eos_id else live).append((score, resp))
        if len(finished) >= num_beams:
            break
    finished.extend(live)  # beams cut at max_tokens
    finished.sort(key=lambda c: c[0], reverse=True)
    return [
        BeamResult(token_ids=r, text=decode([t for t in r if t != eos_id]), score=s)
        for s, r in finished[:num_beams]
    ]


def constrained_beam_search(
    engine,
    prompts: Sequence[Sequence[int]],
    num_beams: int,
    max_tokens: int,
    allowed_tokens: AllowedTokensFn | None,
) -> list[list[BeamResult]]:
    """Beam search per prompt with an engine exposing `next_token_logprobs` and `decode`."""
    return [
        beam_search_one(
            engine.next_token_logprobs,
            p,
            num_beams,
            max_tokens,
            engine.eos_token_id(),
            allowed_tokens,
            engine.decode,
        )
        for p in prompts
    ]
