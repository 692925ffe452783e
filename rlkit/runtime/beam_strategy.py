"""ReRe rollouts: one constrained beam search per prompt, its G beams are the GRPO group.

ReRe (arXiv 2510.12211, docs/algorithms.md §6, docs/rere.md) decodes the next item's title
`response_prefix + '"Title"\\n' + EOS` with beam search constrained to a catalogue trie
(num_beams = num_return_sequences = G, length_penalty 0, no sampling); the G beams — distinct
valid items in beam-score order — are the group, scored together by a group-level reward.

Pieces:
- `ConstrainedBeamStrategy` (registered as `constrained_beam`, controller side): one
  `BeamRequest` per group; `on_finished` turns the finished request's G beams into G samples
  (index = beam rank). `reward_scope = "group"`: rewards are asked for once per complete group
  with each sample's `rank`.
- `serve_beam_jobs` (worker side, called by `RolloutWorker.run`): all beam jobs of one `run` call
  advance together, one `next_token_logprobs` engine pass per decoding step for all their live
  beams (rlkit/engines/constrained_beam.py). The trie is built once per worker process per
  (catalogue file, mtime, response prefix, tokenizer) and cached (`_TRIES`).
- Behaviour log-probs: `RecordingBeamSearch` keeps, for every hypothesis, the engine's
  full-vocabulary log-softmax of each chosen token (the values the beam score sums), so each
  beam's `Completion.logprobs` sum to its beam score (float32 sums, to ~1e-5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.engines.constrained_beam import BeamSearch, TrieConstraint, run_beam_searches
from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.runtime.rollout_worker import SampleRequest
from rlkit.runtime.strategies import Outcome, register_rollout_strategy, request_id


@dataclass
class BeamRequest(SampleRequest):
    """A whole group as one job: constrained beam search over `catalogue` for `prompt_ids`."""

    kind: str = "beam"
    num_beams: int = 1
    max_tokens: int = 64
    catalogue: str = ""
    response_prefix: str = ""


@dataclass
class BeamCompletion(Completion):
    """A finished beam job: `beams` are the G beams (best first) as per-sample completions."""

    beams: list[Completion] = field(default_factory=list)


def is_beam_job(req: Any) -> bool:
    """True for requests the worker serves by constrained beam search."""
    return getattr(req, "kind", "sample") == "beam"


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
        from rlkit.eval.data import load_items

        titles = load_items(p)
    if not isinstance(titles, list) or not titles or not all(isinstance(t, str) for t in titles):
        raise ValueError(f"catalogue {str(p)!r}: expected a non-empty list of title strings")
    return [t.strip() for t in titles]


@register_rollout_strategy("constrained_beam")
class ConstrainedBeamStrategy:
    """G = rollout.samples_per_prompt beams per prompt from one beam job (docs/rere.md).

    Knobs (`rollout.strategy_kw`): `catalogue` (required: items file, JSON or JSONL list of
    titles), `response_prefix` (default ""), `num_beams` (must equal samples_per_prompt when
    given), `max_tokens` (default rollout.max_tokens).
    """

    reward_scope = "group"

    def __init__(
        self,
        sampling: SamplingConfig,
        seed: int,
        *,
        catalogue: str,
        response_prefix: str = "",
        num_beams: int | None = None,
        max_tokens: int | None = None,
    ):
        path = Path(catalogue).expanduser()
        if not path.is_file():
            raise ValueError(f"catalogue {catalogue!r}: file not found")
        self.catalogue = str(path.resolve())
        self.response_prefix = response_prefix
        self.num_beams = num_beams
        self.max_tokens = int(max_tokens or sampling.max_tokens)
        self.sampling, self.seed = sampling, seed

    def requests(self, group: Any) -> list[SampleRequest]:
        """One beam job for the whole group (request id "<group id>:0")."""
        if self.num_beams is not None and self.num_beams != group.size:
            raise ValueError(
                f"constrained_beam: num_beams={self.num_beams} must equal "
                f"rollout.samples_per_prompt={group.size} (the G beams are the group)"
            )
        return [
            BeamRequest(
                request_id(group.group_id, 0),
                list(group.prompt.token_ids),
                self.sampling,
                num_beams=group.size,
                max_tokens=self.max_tokens,
                catalogue=self.catalogue,
                response_prefix=self.response_prefix,
            )
        ]

    def on_finished(self, group: Any, request_id: str, completion: Completion) -> Outcome:
        """The G beams as samples 0..G-1 (beam rank order). With fewer valid items than G the
        group shrinks to the beams returned (each is a distinct item)."""
        beams = list(getattr(completion, "beams", []))
        if 0 < len(beams) < group.size:
            group.size = len(beams)
        return Outcome(samples=list(enumerate(beams)))


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


_TRIES: dict[tuple, Any] = {}  # one trie per worker process per catalogue (see module doc)


def engine_tokenizer(engine: Any) -> Any:
    """The tokenizer of a vLLM engine (`llm.get_tokenizer()`) or an HF engine (`.tokenizer`)."""
    llm = getattr(engine, "llm", None)
    return llm.get_tokenizer() if llm is not None else engine.tokenizer


def cached_trie(catalogue: str, response_prefix: str, tokenizer: Any) -> Any:
    """The catalogue's `ItemTrie`, built on first use in this process and reused after."""
    from rollouts.item_trie import ItemTrie

    p = Path(catalogue)
    key = (str(p), p.stat().st_mtime_ns, response_prefix, tokenizer.name_or_path)
    if key not in _TRIES:
        titles = load_catalogue(p)
        _TRIES[key] = ItemTrie.from_tokenizer(tokenizer, titles, response_prefix=response_prefix)
    return _TRIES[key]


def beam_eos_ids(tokenizer: Any) -> list[int]:
    """The EOS ids beam search stops at: what `generate` uses (generation config), tokenizer
    EOS first (the id the trie's sequences end with)."""
    from rlkit.engines.constrained_beam import generation_eos_ids

    try:
        return generation_eos_ids(tokenizer.name_or_path, tokenizer.eos_token_id)
    except (OSError, ValueError):
        return [int(tokenizer.eos_token_id)]


def serve_beam_jobs(engine: Any, jobs: list[BeamRequest]) -> list:
    """Run every job's constrained beam search together (one engine pass per decoding step for
    all live beams); a FinishedRequest per job whose completion is a `BeamCompletion`.

    The engine must have no live sampling requests (the worker drains them first)."""
    from rlkit.engines.vllm_engine import FinishedRequest

    tok = engine_tokenizer(engine)
    eos = beam_eos_ids(tok)
    tries, searches = [], []
    for job in jobs:
        trie = cached_trie(job.catalogue, job.response_prefix, tok)
        tries.append(trie)
        searches.append(
            RecordingBeamSearch(
                job.prompt_ids, job.num_beams, job.max_tokens, eos, TrieConstraint(trie)
            )
        )
    run_beam_searches(engine.next_token_logprobs, searches)
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
    from rollouts.item_trie import format_item

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
    return BeamCompletion([], [], text="", finish_reason="stop", beams=beams)
