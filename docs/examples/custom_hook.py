"""A worked example of docs/extending.md: a trainer-side token-weight hook.

`algo.token_hook: docs/examples/custom_hook.py:LateTokenWeights` makes every policy-gradient
advantage A_t count w_t = 1 + slope·t/T (t-th response token of T): later tokens, closer to the
answer, get more credit.  A hook that reads the forward itself (attention credit) would record
what it needs inside `capture`; this one needs only the batch.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch


class LateTokenWeights:
    def __init__(self, slope: float = 1.0):
        self.slope = slope
        self._mean = 0.0

    def capture(self, model):
        return nullcontext()

    def streams(self, batch):
        mask = batch["response_mask"]
        pos = mask.cumsum(1) - 1  # 0-based index within the response
        length = mask.sum(1, keepdim=True).clamp(min=1)
        w = (1 + self.slope * pos / length) * mask
        self._mean = float(w[mask > 0].mean())
        return {"adv_weight": w.detach()}

    def metrics(self):
        return {"hook/weight_mean": self._mean}


def late_weights_are_increasing(batch) -> bool:  # used by the docs' test
    w = LateTokenWeights().streams(batch)["adv_weight"][0]
    nz = w[w > 0]
    return bool(torch.all(nz[1:] >= nz[:-1]))
