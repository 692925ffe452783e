"""Padding-free packing of a micro-batch: every sequence concatenated into ONE row.

A micro-batch of b rows (prompt ⊕ response, lengths n_1..n_b) normally runs as a [b, L] tensor
right-padded to L = max n_i: b·L tokens of compute, most of them padding when response lengths
are long-tailed.  Packed, it runs as a [1, N] row with N = Σ n_i and no padding:

- ``position_ids`` restart at 0 for every sequence (RoPE sees the same positions as unpacked);
- attention stays within each sequence (block-diagonal causal).  With ``attention_mask=None``
  transformers (>= 4.54, here 5.x: ``masking_utils.find_packed_sequence_indices`` for sdpa /
  eager / flex, ``prepare_fa_kwargs_from_position_ids`` → ``flash_attn_varlen_func`` for the
  flash kernels) derives the sequence boundaries from the position-id restarts itself, provided
  no KV cache is passed (hence ``use_cache=False``; with a cache it silently attends across
  sequences); ``block_causal_mask`` is the explicit 4-D additive mask for models that do not.

Per-token outputs of the packed row are target-aligned like the padded ones ([1, N-1]: packed
position p predicts token p+1); ``unpack`` gathers them back into the padded, target-aligned
[b, L-1] layout of ``rlkit.engines.train_batch.collate`` (zeros outside each row), so the loss
terms and token hooks see exactly what they see without packing.  The positions that straddle
two sequences (last token of one predicting the first of the next) are never gathered.

Imports torch and ``rlkit.engines.train_batch`` only (no deepspeed / ray / vllm): the packing
benchmark runs on a bare torch + transformers machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rlkit.engines.train_batch import (
    LOGPROB_CHUNK,
    TrainSample,
    collate,
    forward_logprobs,
    response_targets,
)


@dataclass(frozen=True)
class Packed:
    """One packed micro-batch: ``input_ids`` / ``position_ids`` [1, N] and the row lengths."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    seq_lens: tuple[int, ...]

    @property
    def cu_seqlens(self) -> torch.Tensor:
        """Cumulative lengths [b + 1] (int32), the varlen kernels' sequence boundaries."""
        return torch.tensor([0, *self.seq_lens], dtype=torch.int32).cumsum(0, dtype=torch.int32)


def pack_rows(rows: Sequence[Sequence[int]]) -> Packed:
    """Concatenate token rows into one [1, N] row with per-row restarting position ids."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("pack_rows needs at least one row and no empty row")
    ids = torch.tensor([t for r in rows for t in r], dtype=torch.long)
    pos = torch.cat([torch.arange(len(r), dtype=torch.long) for r in rows])
    return Packed(ids[None], pos[None], tuple(len(r) for r in rows))


def pack(samples: Sequence[TrainSample]) -> Packed:
    """The packed row of a micro-batch: each sample's prompt ⊕ response, in order."""
    return pack_rows([s.prompt_ids + s.response_ids for s in samples])


def block_causal_mask(
    seq_lens: Sequence[int], dtype: torch.dtype = torch.float32, device: Any = None
) -> torch.Tensor:
    """Additive [1, 1, N, N] mask: 0 where query q may attend key k (same sequence, k <= q),
    the dtype's minimum elsewhere (transformers' convention for a prepared 4-D mask)."""
    seq = torch.repeat_interleave(torch.arange(len(seq_lens)), torch.tensor(list(seq_lens)))
    seq = seq.to(device)
    n = seq.numel()
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    allowed = causal & (seq[:, None] == seq[None, :])
    mask = torch.zeros(n, n, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def unpack_index(seq_lens: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(index [b, L-1] into the packed target axis, valid [b, L-1] bool).

    Row i's target t (t < n_i - 1) sits at packed target position offset_i + t."""
    lens = torch.tensor(list(seq_lens), dtype=torch.long)
    offsets = torch.cumsum(lens, 0) - lens
    width = max(int(lens.max()) - 1, 0)
    t = torch.arange(width, dtype=torch.long)
    valid = t[None, :] < (lens[:, None] - 1)
    index = torch.where(valid, offsets[:, None] + t[None, :], torch.zeros_like(t)[None, :])
    return index, valid


def unpack(values: torch.Tensor, seq_lens: Sequence[int]) -> torch.Tensor:
    """[1, N-1, ...] target-aligned packed values -> the padded [b, L-1, ...] layout of
    `collate` (zero outside each row).  Differentiable (a gather)."""
    index, valid = unpack_index(seq_lens)
    index, valid = index.to(values.device), valid.to(values.device)
    flat = values[0]
    if flat.shape[0] == 0:  # every row has one token: no target position at all
        return values.new_zeros((len(seq_lens), index.shape[1], *values.shape[2:]))
    out = flat[index.reshape(-1)].reshape(*index.shape, *values.shape[2:])
    keep = valid.reshape(*valid.shape, *([1] * (values.dim() - 2)))
    return torch.where(keep, out, torch.zeros((), dtype=out.dtype, device=out.device))


def packed_response_targets(samples: Sequence[TrainSample]) -> torch.Tensor:
    """Target positions of the packed row (`pack(samples)`) that predict a response token."""
    out, offset = [], 0
    for s in samples:
        n, lo = len(s.prompt_ids) + len(s.response_ids), len(s.prompt_ids) - 1
        out.append(torch.arange(offset + max(lo, 0), offset + n - 1))
        offset += n
    return torch.cat(out)


def packed_forward_logprobs(
    model: Any,
    packed: Packed,
    *,
    entropy: str = "none",
    chunk: int = LOGPROB_CHUNK,
    keep: torch.Tensor | None = None,
):
    """`forward_logprobs` on the packed row: `(logp, logits, ent)` with logp / ent unpacked
    to [b, L-1]; the logits stay packed [1, N-1, V] (or [1, len(keep), V]: unpacking them
    would re-create the padded [b, L-1, V] tensor packing avoids; the trainer hands the
    entropy in, so no shipped loss term reads them)."""
    dev = _device_of(model)
    ids, pos = packed.input_ids.to(dev), packed.position_ids.to(dev)
    logp, logits, ent = forward_logprobs(
        model, ids, None, position_ids=pos, entropy=entropy, chunk=chunk, keep=keep
    )
    unpacked_ent = None if ent is None else unpack(ent, packed.seq_lens)
    return unpack(logp, packed.seq_lens), logits, unpacked_ent


def micro_batch_forward(
    model: Any, samples: list[TrainSample], pad_id: int, *, packing: bool, entropy: str = "none"
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(batch, logp, logits, ent) of one micro-batch, padded or packed.

    `batch` is always the padded `collate` dict (the streams the loss terms read); with
    `packing` the forward runs on the packed row and logp / ent come back in its layout.  Only
    the response positions' logits are computed (`forward_logprobs`' `keep`): logp / ent are
    zero on prompt positions, and the logits are [b | 1, kept positions, V].  The input tensors
    go to the model's device; the batch stays where `collate` made it."""
    batch = collate(samples, pad_id)
    if packing:
        keep = packed_response_targets(samples)
        logp, logits, ent = packed_forward_logprobs(
            model, pack(samples), entropy=entropy, keep=keep
        )
    else:
        dev = _device_of(model)
        ids, attn = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
        keep = response_targets(samples)
        logp, logits, ent = forward_logprobs(model, ids, attn, entropy=entropy, keep=keep)
    return batch, logp, logits, ent


def _device_of(model: Any) -> torch.device:
    """Where the model's parameters live (a plain module or the DeepSpeed engine)."""
    params = getattr(model, "parameters", None)
    p = next(params(), None) if params is not None else None
    return p.device if p is not None else torch.device("cpu")
