"""ReRe rollouts: one constrained beam search per prompt, its G beams are the GRPO group.

ReRe (arXiv 2510.12211, docs/algorithms.md §6, docs/rere.md) decodes the next item's title
`response_prefix + '"Title"\\n' + EOS` with beam search constrained to a catalogue trie
(num_beams = num_return_sequences = G, length_penalty 0, no sampling); the G beams (distinct
valid items in beam-score order) are the group, scored together by a group-level reward.

`ConstrainedBeamStrategy` (rollout strategy `constrained_beam`, controller side) makes one
`BeamRequest` per group, a request of the worker kind `constrained_beam` that
rlkit.methods.rere.beam_jobs serves; `on_finished` turns the finished request's G beams into G
samples (index = beam rank).  `reward_scope = "group"`: rewards are asked for once per complete
group with each sample's `rank`.

`stochastic=True` (docs/rere.md "Stochastic beams"): the job samples its G beams without
replacement by Gumbel-top-k stochastic beam search (rlkit.methods.rere.stochastic_beams), seeded
by `sample_seed(run seed, group id, 0)`; each sample's inclusion probability estimate reaches
the reward functions as the field `inclusion_prob`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.runtime.actors.request_kinds import SampleRequest
from rlkit.runtime.controller.strategies import (
    Outcome,
    register_rollout_strategy,
    request_id,
    sample_seed,
)


@dataclass
class BeamRequest(SampleRequest):
    """A whole group as one job: constrained beam search over `catalogue` for `prompt_ids`."""

    kind: str = "constrained_beam"
    num_beams: int = 1
    max_tokens: int = 64
    catalogue: str = ""
    response_prefix: str = ""
    stochastic: bool = False  # Gumbel-top-k stochastic beams instead of the top G
    seed: int | None = None  # the stochastic search's seed


@dataclass
class BeamCompletion(Completion):
    """A finished beam job: `beams` are the G beams (best first; stochastic: largest perturbed
    value first) as per-sample completions; `inclusion_probs` (stochastic jobs only) each
    beam's inclusion probability estimate q, in the same order."""

    beams: list[Completion] = field(default_factory=list)
    inclusion_probs: list[float] | None = None


@register_rollout_strategy("constrained_beam")
class ConstrainedBeamStrategy:
    """G = rollout.samples_per_prompt beams per prompt from one beam job (docs/rere.md).

    Knobs (`rollout.strategy_kw`): `catalogue` (required: items file, JSON or JSONL list of
    titles), `response_prefix` (default ""), `num_beams` (must equal samples_per_prompt when
    given), `max_tokens` (default rollout.max_tokens), `stochastic` (default false: Gumbel-top-k
    stochastic beams, docs/rere.md "Stochastic beams").
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
        stochastic: bool = False,
    ):
        path = Path(catalogue).expanduser()
        if not path.is_file():
            raise ValueError(f"catalogue {catalogue!r}: file not found")
        self.catalogue = str(path.resolve())
        self.response_prefix = response_prefix
        self.num_beams = num_beams
        self.max_tokens = int(max_tokens or sampling.max_tokens)
        self.sampling, self.seed = sampling, seed
        self.stochastic = bool(stochastic)

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
                stochastic=self.stochastic,
                seed=sample_seed(self.seed, group.group_id, 0) if self.stochastic else None,
            )
        ]

    def on_finished(self, group: Any, request_id: str, completion: Completion) -> Outcome:
        """The G beams as samples 0..G-1 (beam rank order). With fewer valid items than G the
        group shrinks to the beams returned (each is a distinct item). Stochastic beams add the
        reward field `inclusion_prob` per sample."""
        beams = list(getattr(completion, "beams", []))
        if 0 < len(beams) < group.size:
            group.size = len(beams)
        probs = getattr(completion, "inclusion_probs", None) or []
        fields = {j: {"inclusion_prob": q} for j, q in enumerate(probs)}
        return Outcome(samples=list(enumerate(beams)), fields=fields)
