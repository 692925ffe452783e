"""The run's prompt stream with a position a checkpoint can save.

The source (rlkit.runtime.prepare.prompt_stream) is seeded: drawn again from the start it gives
the same prompts in the same order.  A checkpoint keeps how many prompts were drawn and which
of them must be issued again (those in flight at the checkpoint: their groups are not saved);
`load_state_dict` re-draws the source to that position and queues those prompts first.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from rlkit.runtime.controller.groups import Prompt


class PromptStream:
    def __init__(self, source: Iterator[Prompt]):
        self._source = source
        self.drawn = 0  # prompts taken from the source so far
        self._again: list[Prompt] = []  # prompts to issue again before the source's next

    def __iter__(self) -> PromptStream:
        return self

    def __next__(self) -> Prompt:
        if self._again:
            return self._again.pop(0)
        prompt = next(self._source)
        self.drawn += 1
        return prompt

    def state_dict(self, in_flight: list[int]) -> dict:
        """The position, with the prompts (by index) of `in_flight` groups to issue again."""
        again = {p.index for p in self._again} | set(in_flight)
        return {"drawn": self.drawn, "again": sorted(again)}

    def load_state_dict(self, state: dict) -> None:
        """Re-draw the (fresh, seeded) source to `drawn`; the `again` prompts come first."""
        wanted = set(state["again"])
        replay = itertools.islice(self._source, state["drawn"] - self.drawn)
        self._again += [p for p in replay if p.index in wanted]
        self.drawn = state["drawn"]
