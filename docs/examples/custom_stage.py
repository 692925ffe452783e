"""A worked example of docs/extending.md: a credit stage.

`algo.credit: [docs/examples/custom_stage.py:BrevityBonus]` adds `bonus·(1 − n/n_max)` to the
reward of every response before the advantage stage, n its length in tokens, n_max the longest
of the batch, and logs the mean bonus.
"""

from __future__ import annotations

import torch


class BrevityBonus:
    def __init__(self, cfg, bonus: float = 0.1):
        self.bonus = bonus

    def run(self, batch, services):
        n = torch.tensor(batch.lengths, dtype=torch.float32)
        extra = self.bonus * (1 - n / n.max())
        batch.rewards = batch.rewards + extra
        batch.stats["brevity/bonus_mean"] = float(extra.mean())
