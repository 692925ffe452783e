"""Token entropy of a categorical policy from its logits."""

from __future__ import annotations

import torch
from torch import Tensor


def entropy_from_logits(logits: Tensor) -> Tensor:
    """H = logsumexp(z) - sum_v softmax(z)_v z_v, over the last dim ([B, T, V] -> [B, T]).

    Equals -sum p log p but never forms log p of a zero probability, so it is finite for very
    large or -inf-free logits (the form used by verl ``entropy_from_logits``).
    """
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)
