"""Loss aggregation: per-token values [B, T] -> one scalar, with micro-batch/rank invariance.

Modes (names as verl's ``loss_agg_mode``):

- ``token-mean``:               sum_{i,t} m x / N_tok                      (DAPO token-level)
- ``seq-mean-token-mean``:      (1/N_seq) sum_i (sum_t m x / |o_i|)         (GRPO paper)
- ``seq-mean-token-sum``:       (1/N_seq) sum_i sum_t m x
- ``seq-mean-token-sum-norm``:  (1/N_seq) sum_i (sum_t m x) / max_len       (Dr.GRPO; TRL
  ``loss_type="dr_grpo"`` divides by B * max_completion_length, the same thing)

Invariance: the numerators are sums over tokens or sequences, so if the global normalisers
``num_tokens`` (N_tok) / ``num_seqs`` (N_seq) / ``max_len`` of the *whole* global batch are
passed, each micro-batch returns its additive share and the shares (and their gradients) sum to
the full-batch value however the batch is split over micro-batches and data-parallel ranks.
Without them, the normalisers come from the given tensor (N_tok = valid tokens, N_seq =
sequences with at least one valid token, max_len = T), which is only right for the full batch.
With DP ranks that each average their gradients, multiply the share by the world size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rlkit.algos.masked_ops import _bool, masked_sum
from rlkit.algos.registry import check_choice

AGG_MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)


def global_normalizers(response_lengths: Sequence[int], max_len: int) -> dict[str, float]:
    """The normalisers of one optimizer step to pass to :func:`aggregate` with every
    micro-batch's share: ``num_tokens`` (the trained response tokens of all its samples, i.e.
    each sample's ``TrainSample.num_trained``: environment tokens of multi-turn samples are not
    counted, as the mask leaves them out of every numerator), ``num_seqs`` (its samples) and
    ``max_len`` (the rollout's token limit, for ``seq-mean-token-sum-norm``)."""
    return {
        "num_tokens": float(sum(response_lengths)),
        "num_seqs": float(len(response_lengths)),
        "max_len": float(max_len),
    }


def _denominator(given: float | Tensor | None, local: Tensor) -> Tensor:
    if given is None:
        return local.clamp(min=1)
    return torch.as_tensor(given, dtype=local.dtype, device=local.device)


def aggregate(
    values: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    *,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
    max_len: int | float | None = None,
) -> Tensor:
    """Aggregate masked per-token ``values`` [B, T] into a scalar with loss mode ``mode``.

    Returns this (micro-)batch's share of the global value when the global normalisers are given
    (see module docstring), else the value normalised over the tensor itself.
    """
    check_choice("aggregation mode", mode, AGG_MODES)
    m = _bool(mask)
    dtype = values.dtype
    if mode == "token-mean":
        return masked_sum(values, m) / _denominator(num_tokens, m.sum().to(dtype))
    seq_sum = masked_sum(values, m, dim=-1)  # [B]
    n_seq = _denominator(num_seqs, m.any(dim=-1).sum().to(dtype))
    if mode == "seq-mean-token-mean":
        lengths = m.sum(dim=-1).to(dtype).clamp(min=1)
        return (seq_sum / lengths).sum() / n_seq
    if mode == "seq-mean-token-sum":
        return seq_sum.sum() / n_seq
    denom_len = float(m.shape[-1]) if max_len is None else float(max_len)
    return seq_sum.sum() / denom_len / n_seq
