"""The worker side of ReRe rollouts: the request kind `constrained_beam`.

All beam jobs of one worker `run` call advance together, one `next_token_logprobs` engine pass
per decoding step for all their live beams (rlkit.methods.rere.beam_search); the worker serves
them once its in-flight sampling requests have finished (an exclusive kind,
rlkit.runtime.actors.request_kinds).  The trie is built once per worker process per (catalogue file,
mtime, response prefix, tokenizer) and cached (`_TRIES`).

Behaviour log-probs: `RecordingBeamSearch` keeps, for every hypothesis, the engine's
full-vocabulary log-softmax of each chosen token (the values the beam score sums), so each
beam's `Completion.logprobs` sum to its beam score (float32 sums, to ~1e-5).

A job with `stochastic=True` runs `RecordingStochasticBeamSearch` instead (Gumbel-top-k
stochastic beams, rlkit.methods.rere.stochastic_beams, seeded by the job's `seed`): its beams come
in order of their perturbed value, and the `BeamCompletion` carries each beam's inclusion
probability estimate in `inclusion_probs`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlkit.engines.rollout_protocol import Completion, FinishedRequest
from rlkit.eval.data import load_items
from rlkit.methods.rere.beam_search import (
    BeamSearch,
    TrieConstraint,
    engine_eos_ids,
    run_beam_searches,
    search_scorer,
)
from rlkit.methods.rere.item_trie import ItemTrie, format_item
from rlkit.methods.rere.stochastic_beams import StochasticBeamSearch
from rlkit.methods.rere.strategy import BeamCompletion, BeamRequest
from rlkit.runtime.actors.request_kinds import register_request_kind


def load_catalogue(path: str | Path) -> list[str]:
    """Titles of a catalogue file: `.json` (a list of titles), `.jsonl` (one title string, or an
    object with a `title` field, per line), else an items file `sid<TAB>title<TAB>id` as
    `rlkit eval --items` reads it."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"catalogue {str(p)!r}: file not found")
    if p.suffix == ".json":
        titles = json.loads(p.read_text(encoding="utf-8"))
    elif p.suffix == ".jsonl":
        lines = [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
        titles = [x["title"] if isinstance(x, dict) else x for x in lines]
    else:
        titles = load_items(p)
    if not isinstance(titles, list) or not titles or not all(isinstance(t, str) for t in titles):
        raise ValueError(f"catalogue {str(p)!r}: expected a non-empty list of title strings")
    return [t.strip() for t in titles]


class RecordingBeamSearch(BeamSearch):
    """`BeamSearch` that also records each hypothesis' per-token full-vocab logprobs."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.token_logprobs: dict[tuple[int, ...], tuple[float, ...]] = {(): ()}
        self._step: Any = None

    def advance(self, logprobs: Any) -> None:
        self._step = logprobs
        super().advance(logprobs)

    def _extend(self, slot: int, tok: int, score: float) -> Any:
        hyp = super()._extend(slot, tok, score)
        parent = self.running[slot].tokens  # still the previous step's beams here
        self.token_logprobs[hyp.tokens] = (
            *self.token_logprobs[parent],
            float(self._step[slot][tok]),
        )
        return hyp


class RecordingStochasticBeamSearch(RecordingBeamSearch, StochasticBeamSearch):
    """`StochasticBeamSearch` that records per-token logprobs like `RecordingBeamSearch`."""


def make_search(job: BeamRequest, eos: list[int], trie: ItemTrie) -> RecordingBeamSearch:
    """The job's search: deterministic beams, or stochastic ones seeded by `job.seed`."""
    args = (job.prompt_ids, job.num_beams, job.max_tokens, eos, TrieConstraint(trie))
    if job.stochastic:
        return RecordingStochasticBeamSearch(*args, seed=job.seed)
    return RecordingBeamSearch(*args)


_TRIES: dict[tuple, Any] = {}  # one trie per worker process per catalogue (see module doc)


def cached_trie(catalogue: str, response_prefix: str, tokenizer: Any) -> ItemTrie:
    """The catalogue's `ItemTrie`, built on first use in this process and reused after."""
    p = Path(catalogue)
    key = (str(p), p.stat().st_mtime_ns, response_prefix, tokenizer.name_or_path)
    if key not in _TRIES:
        titles = load_catalogue(p)
        _TRIES[key] = ItemTrie.from_tokenizer(tokenizer, titles, response_prefix=response_prefix)
    return _TRIES[key]


@register_request_kind("constrained_beam", exclusive=True)
def serve_beam_jobs(engine: Any, jobs: list[BeamRequest]) -> list[FinishedRequest]:
    """Run every job's constrained beam search together (one engine pass per decoding step for
    all live beams); a FinishedRequest per job whose completion is a `BeamCompletion`.

    The engine must have no live sampling requests (the worker drains them first)."""
    tok = engine.tokenizer
    eos = engine_eos_ids(engine)
    tries, searches = [], []
    for job in jobs:
        trie = cached_trie(job.catalogue, job.response_prefix, tok)
        tries.append(trie)
        searches.append(make_search(job, eos, trie))
    run_beam_searches(search_scorer(engine), searches)
    version = engine.version
    return [
        FinishedRequest(job.request_id, beam_completion(search, trie, job, eos, tok), version)
        for job, search, trie in zip(jobs, searches, tries, strict=True)
    ]


def beam_completion(
    search: RecordingBeamSearch, trie: Any, job: BeamRequest, eos: list[int], tok: Any
) -> Completion:
    """The job's beams as completions: token ids (EOS included), per-token behaviour logprobs,
    text = the catalogue item's response text (decoded tokens for a beam cut at max_tokens)."""
    beams = []
    for ids, _score in search.results():
        title = trie.decode_item(ids)
        done = bool(ids) and ids[-1] in eos
        text = (
            format_item(title, job.response_prefix)
            if title is not None
            else tok.decode([t for t in ids if t not in eos])
        )
        lps = list(search.token_logprobs[tuple(ids)])
        beams.append(Completion(list(ids), lps, text, "stop" if done else "length"))
    if not beams:
        return Completion([], [], text="beam search: no catalogue item", finish_reason="error")
    probs = search.inclusion_probs() if isinstance(search, StochasticBeamSearch) else None
    return BeamCompletion([], [], text="", finish_reason="stop", beams=beams, inclusion_probs=probs)
