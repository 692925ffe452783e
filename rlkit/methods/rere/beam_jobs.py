"""The worker side of ReRe rollouts: the request kind `constrained_beam`.

A stepped kind (rlkit.runtime.actors.request_kinds): the worker keeps one `BeamJobs` with every
live job, whichever `run` call brought it.  A decoding step of a job is a round of next-token
jobs, one per running beam (its prefix, the trie's allowed ids: `SamplingConfig.next_token_ids`,
any number of them), added to the engine beside everything else; after each engine step the
worker hands the finished ones back (`route`), and a job whose round is complete advances its
search (rlkit.methods.rere.beam_search) and adds the next round.  The rounds of all live jobs
therefore share engine steps, with each other and with sampling requests: on vLLM the one-token
requests batch with the decoding samples (prefix caching keeps each beam's prefix), on the HF
engine one scorer call per step serves every job's round with each beam's KV cache kept
(rlkit.engines.request_adapter).  Weights loaded mid-search serve the later rounds, as for a
sampling request (each token's behaviour logprob is that of the weights that scored it; the job
keeps the version it started under).  The trie is built once per worker process per (catalogue file,
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.engines.rollout_protocol import Completion, FinishedRequest, SamplingConfig
from rlkit.eval.data import load_items
from rlkit.methods.rere.beam_search import (
    BeamSearch,
    TrieConstraint,
    engine_eos_ids,
)
from rlkit.methods.rere.item_trie import ItemTrie, format_item
from rlkit.methods.rere.stochastic_beams import StochasticBeamSearch
from rlkit.methods.rere.strategy import BeamCompletion, BeamRequest
from rlkit.runtime.actors.request_kinds import refused, register_stepped_kind


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


@dataclass
class _LiveJob:
    """A running beam job: its search, its trie, its round's answers (None until in)."""

    job: BeamRequest
    search: RecordingBeamSearch
    trie: ItemTrie
    eos: list[int]
    version: int
    answers: list[dict[int, float] | None] = field(default_factory=list)
    round: int = 0


@register_stepped_kind("constrained_beam")
class BeamJobs:
    """The worker's live beam jobs (a stepped request kind, see the module doc).

    A job's round is one next-token job per running beam, ids "<job id>@<round>.<beam>"; when
    all of a round's answers are in, its search advances one decoding step and adds the next
    round, or finishes and the job comes back as a `BeamCompletion`."""

    def __init__(self) -> None:
        self.live: dict[str, _LiveJob] = {}
        self._owner: dict[str, tuple[str, int]] = {}  # engine request id -> (job id, beam)

    def add(self, engine: Any, jobs: list[BeamRequest]) -> list[FinishedRequest]:
        tok, eos = engine.tokenizer, engine_eos_ids(engine)
        refused_jobs = []
        for job in jobs:
            try:
                trie = cached_trie(job.catalogue, job.response_prefix, tok)
                live = _LiveJob(job, make_search(job, eos, trie), trie, eos, engine.version)
                self.live[job.request_id] = live
                finished = self._next_round(engine, live)
            except Exception as exc:  # one bad job must not stop the worker
                self._drop(engine, job.request_id)
                refused_jobs.append(refused(job.request_id, exc, engine.version))
                continue
            refused_jobs.extend(finished)
        return refused_jobs

    def route(self, engine: Any, finished: list[FinishedRequest]) -> list[FinishedRequest]:
        rest, complete = [], []
        for f in finished:
            owner = self._owner.pop(f.request_id, None)
            if owner is None:
                rest.append(f)
                continue
            live = self.live.get(owner[0])
            if live is None:
                continue
            live.answers[owner[1]] = f.completion.next_logprobs
            if live.answers[owner[1]] is None:  # the engine refused the step
                self._drop(engine, owner[0])
                rest.append(refused(owner[0], RuntimeError(f.completion.text), live.version))
            elif all(a is not None for a in live.answers):
                complete.append(live)
        for live in complete:
            try:
                live.search.advance(live.answers)
                rest.extend(self._next_round(engine, live))
            except Exception as exc:  # one bad job must not stop the worker
                self._drop(engine, live.job.request_id)
                rest.append(refused(live.job.request_id, exc, live.version))
        return rest

    def abort(self, engine: Any, request_ids: list[str]) -> None:
        for rid in request_ids:
            if rid in self.live:
                self._drop(engine, rid)

    def pending_ids(self) -> list[str]:
        return list(self.live)

    def _next_round(self, engine: Any, live: _LiveJob) -> list[FinishedRequest]:
        """Add the job's next round; the finished job instead when its search is done."""
        job_id = live.job.request_id
        if live.search.done:
            del self.live[job_id]
            done = beam_completion(live.search, live.trie, live.job, live.eos, engine.tokenizer)
            return [FinishedRequest(job_id, done, live.version)]
        reqs = live.search.requests()
        live.round += 1
        live.answers = [None] * len(reqs)
        for b, (prefix, allowed) in enumerate(reqs):
            rid = f"{job_id}@{live.round}.{b}"
            cfg = SamplingConfig(
                max_tokens=1, next_token_ids=allowed, next_token_top_k=live.search.k
            )
            self._owner[rid] = (job_id, b)
            engine.add(rid, prefix, cfg)
        return []

    def _drop(self, engine: Any, job_id: str) -> None:
        """Forget a job and abort its round's engine requests."""
        self.live.pop(job_id, None)
        mine = [r for r, (j, _) in self._owner.items() if j == job_id]
        for r in mine:
            del self._owner[r]
        if mine:
            engine.abort(mine)


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
