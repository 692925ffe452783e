"""A two-turn rollout strategy for the rollout-dump test: the model answers, three fixed
"environment" tokens follow, the model answers again in the same token sequence.  The sample is
both turns with `loss_mask` 1 (model) / 0 (environment) / 1 (model), `turns` 2."""

from __future__ import annotations

import dataclasses

from rlkit.engines.rollout_protocol import Completion
from rlkit.runtime.actors.request_kinds import SampleRequest
from rlkit.runtime.controller.strategies import (
    Outcome,
    SampleStrategy,
    parse_request_id,
    sample_seed,
)

ENV = [40, 41, 42]  # token ids of the tiny model's character vocabulary


class TwoTurns(SampleStrategy):
    def __init__(self, sampling, seed, **kw):
        super().__init__(sampling, seed, **kw)
        self.first: dict[tuple[int, int], Completion] = {}

    def on_finished(self, group, request_id: str, completion: Completion) -> Outcome:
        g, j = parse_request_id(request_id)
        if request_id.count(":") == 1:  # the first turn: the environment answers, turn two
            self.first[(g, j)] = completion
            prompt = [*group.prompt.token_ids, *completion.token_ids, *ENV]
            seed = sample_seed(self.seed, g, j) + 1
            sampling = dataclasses.replace(self.sampling, n=1, seed=seed)
            return Outcome(follow_up=[SampleRequest(f"{g}:{j}:1", prompt, sampling)])
        a = self.first.pop((g, j))
        b = completion
        return Outcome(
            samples=[
                (
                    j,
                    Completion(
                        [*a.token_ids, *ENV, *b.token_ids],
                        [*a.logprobs, *[0.0] * len(ENV), *b.logprobs],
                        a.text + b.text,
                        b.finish_reason,
                        [1] * len(a.token_ids) + [0] * len(ENV) + [1] * len(b.token_ids),
                        2,
                    ),
                )
            ]
        )

    def drop(self, group_id: int) -> None:
        for key in [k for k in self.first if k[0] == group_id]:
            del self.first[key]
