"""A worked example of docs/extending.md: a rollout strategy.

`rollout.strategy: docs/examples/custom_strategy.py:GreedyFirst` makes sample 0 of every group
the greedy response and the other G−1 samples as usual: the group then always contains the
policy's mode, a common baseline trick.  It reuses SampleStrategy and changes one request.
"""

from __future__ import annotations

from rlkit.runtime.controller.strategies import SampleStrategy


class GreedyFirst(SampleStrategy):
    def requests(self, group):
        reqs = super().requests(group)
        reqs[0].sampling.temperature = 0.0
        return reqs
