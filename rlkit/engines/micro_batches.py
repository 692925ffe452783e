"""Micro-batches of a training step: which samples go together (the layout), and the model
inputs of each one, padded or packed (`build`).  rlkit.engines.logprobs then runs the forward.

Layout.  A layout is, for every rank and every mini-batch, the list of micro-batches as index
lists into that rank's chunk of the mini-batch.  The loss does not depend on the layout (every
term divides by the step's global normalisers, rlkit.algos.aggregation), so the layout is free to
minimise padding; but DeepSpeed ZeRO reduces gradients in every backward pass, so every rank
must run the same number of backward passes per optimizer step.  `step_layout` therefore
computes all ranks' layouts together and gives every rank the same micro-batch count per
mini-batch.

Token budget (dynamic batch size, as verl's `use_dynamic_bsz` / `ppo_max_token_len_per_gpu`):
rows sorted longest first, a micro-batch grows while `rows x longest row <= budget` (a row
longer than the budget goes alone); ranks with fewer micro-batches then split their largest
ones (most padded tokens) in two until the counts match.

Packed (`trainer.packing`, `build` below): a micro-batch is one row of Σ lengths, so
the budget counts real tokens: first-fit decreasing (each row, longest first, goes into the
first micro-batch it fits, `Σ lengths <= budget`), and splits take the micro-batch with the
most real tokens.

Build.  A micro-batch of b rows (prompt ⊕ response, lengths n_1..n_b) normally runs as a [b, L]
tensor right-padded to L = max n_i: b·L tokens of compute, most of them padding when response
lengths are long-tailed.  Packed (padding-free), it runs as ONE [1, N] row, N = Σ n_i:

- ``position_ids`` restart at 0 for every sequence (RoPE sees the same positions as unpacked);
- attention stays within each sequence (block-diagonal causal).  With ``attention_mask=None``
  transformers (>= 4.54, here 5.x: ``masking_utils.find_packed_sequence_indices`` for sdpa /
  eager / flex, ``prepare_fa_kwargs_from_position_ids`` → ``flash_attn_varlen_func`` for the
  flash kernels) derives the sequence boundaries from the position-id restarts itself, provided
  no KV cache is passed (hence ``use_cache=False`` in the forward; with a cache it silently
  attends across sequences); ``block_causal_mask`` is the explicit 4-D additive mask for models
  that do not.

Per-token outputs of the packed row are target-aligned like the padded ones ([1, N-1]: packed
position p predicts token p+1); ``MicroBatch.to_padded`` (``unpack``) gathers them back into
the padded, target-aligned [b, L-1] layout of ``rlkit.engines.train_batch.collate`` (zeros
outside each row), so the loss terms and token hooks see exactly what they see without
packing.  The positions that straddle two sequences are never gathered.

Imports torch and ``rlkit.engines.train_batch`` only (no deepspeed / ray / vllm): the packing
benchmark runs on a bare torch + transformers machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rlkit.engines.train_batch import TrainSample, collate, longest_first

Layout = list[list[int]]  # micro-batches of one rank's mini-batch chunk, as indices


def row_lengths(samples: Sequence) -> list[int]:
    """Length of each collated row: prompt ⊕ response."""
    return [len(s.prompt_ids) + len(s.response_ids) for s in samples]


def padded_tokens(mb: Sequence[int], lens: Sequence[int]) -> int:
    """Tokens of a micro-batch once right-padded: rows x its longest row."""
    return len(mb) * max((lens[i] for i in mb), default=0)


def packed_tokens(mb: Sequence[int], lens: Sequence[int]) -> int:
    """Tokens of a micro-batch once packed into one row: Σ of its rows' lengths."""
    return sum(lens[i] for i in mb)


def tokens_of(mb: Sequence[int], lens: Sequence[int], packed: bool) -> int:
    """What a micro-batch costs against the budget: packed or padded tokens."""
    return packed_tokens(mb, lens) if packed else padded_tokens(mb, lens)


def by_count(lens: Sequence[int], size: int) -> Layout:
    """Micro-batches of `size` rows (the last one may be smaller), the rows sorted longest
    first: rows of similar length share a micro-batch, so each pads to little more than its
    own rows (GRPO groups mix 5-token answers with truncated 64-token ones; contiguous groups
    would pad every micro-batch to the longest row of the step)."""
    order = longest_first(lens)
    return [order[i : i + size] for i in range(0, len(order), size)]


def by_tokens(lens: Sequence[int], budget: int, packed: bool = False) -> Layout:
    """Greedy token-budget micro-batches over the rows sorted longest first (first-fit
    decreasing on real tokens when `packed`)."""
    order = longest_first(lens)
    out: Layout = []
    if packed:
        load: list[int] = []
        for i in order:
            k = next((k for k, n in enumerate(load) if n + lens[i] <= budget), len(out))
            if k == len(out):
                out.append([])
                load.append(0)
            out[k].append(i)
            load[k] += lens[i]
        return out
    for i in order:
        if out and (len(out[-1]) + 1) * lens[out[-1][0]] <= budget:
            out[-1].append(i)  # sorted: the first row of a micro-batch is its longest
        else:
            out.append([i])
    return out


def split_to(layout: Layout, count: int, lens: Sequence[int], packed: bool = False) -> Layout:
    """Split the micro-batch with the most (padded or packed) tokens in two until there are
    `count`."""
    out = [list(mb) for mb in layout]
    while len(out) < count:
        splittable = [k for k, mb in enumerate(out) if len(mb) > 1]
        if not splittable:
            raise ValueError(f"cannot make {count} micro-batches of {sum(map(len, out))} rows")
        k = max(splittable, key=lambda j: (tokens_of(out[j], lens, packed), -j))
        mb = out.pop(k)
        half = len(mb) // 2
        out[k:k] = [mb[:half], mb[half:]]
    return out


def step_layout(
    chunks: Sequence[Sequence[Sequence]], micro: int, budget: int, packed: bool = False
) -> list:
    """`chunks[r][k]`: rank r's samples of mini-batch k.  Returns `layout[r][k]` (a Layout).

    `budget` 0: micro-batches of `micro` samples of similar length (`by_count`; equal counts:
    the chunks are equal in size);
    otherwise token-budget micro-batches (real tokens when `packed`), the count of mini-batch
    k being the largest over the ranks."""
    lens = [[row_lengths(c) for c in rank] for rank in chunks]
    if budget <= 0:
        return [[by_count(ls, micro) for ls in rank] for rank in lens]
    greedy = [[by_tokens(ls, budget, packed) for ls in rank] for rank in lens]
    minis = len(chunks[0]) if chunks else 0
    counts = [max(len(rank[k]) for rank in greedy) for k in range(minis)]
    return [
        [split_to(greedy[r][k], counts[k], lens[r][k], packed) for k in range(minis)]
        for r in range(len(chunks))
    ]


# ---- build: the model inputs of one micro-batch ---------------------------------------------


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch, ready for the forward (rlkit.engines.logprobs.micro_batch_forward).

    `batch` is always the padded `collate` dict (the streams the loss terms read).  The model
    inputs are the padded rows (`attention_mask` set) or, packed, one row (`position_ids` and
    `seq_lens` set, no mask).  `keep`: the target positions whose logits the forward computes
    (trained response positions only), in the input's own layout."""

    samples: list[TrainSample]
    batch: dict[str, torch.Tensor]
    input_ids: torch.Tensor
    keep: torch.Tensor
    attention_mask: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    seq_lens: tuple[int, ...] | None = None

    @property
    def packed(self) -> bool:
        return self.seq_lens is not None

    def to_padded(self, values: torch.Tensor) -> torch.Tensor:
        """Per-target values of the forward in the padded [b, L-1] layout of `batch`."""
        return unpack(values, self.seq_lens) if self.seq_lens is not None else values

    def forward_tokens(self) -> int:
        """Tokens the forward runs: b x L padded, Σ lengths packed."""
        return tokens_of(range(len(self.samples)), row_lengths(self.samples), self.packed)


def build(samples: list[TrainSample], pad_id: int, packing: bool) -> MicroBatch:
    """The micro-batch of `samples`: padded rows, or one packed row when `packing`."""
    batch = collate(samples, pad_id)
    if packing:
        p = pack(samples)
        return MicroBatch(
            samples,
            batch,
            p.input_ids,
            packed_response_targets(samples),
            position_ids=p.position_ids,
            seq_lens=p.seq_lens,
        )
    return MicroBatch(
        samples,
        batch,
        batch["input_ids"],
        response_targets(samples),
        attention_mask=batch["attention_mask"],
    )


def response_targets(samples: Sequence[TrainSample]) -> torch.Tensor:
    """Target positions (of the `collate` layout) where some sample has a trained token: the
    only logits a training forward reads.  Prompt positions and positions where every row holds
    an environment token (a multi-turn tool output) get no LM head and no log-softmax."""
    width = max(len(s.prompt_ids) + len(s.response_ids) for s in samples) - 1
    hit = torch.zeros(max(width, 0), dtype=torch.bool)
    for s in samples:
        pos, trained = _trained_targets(s)
        hit[pos[trained]] = True
    return hit.nonzero().squeeze(1)


@dataclass(frozen=True)
class Packed:
    """One packed row: ``input_ids`` / ``position_ids`` [1, N] and the row lengths."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    seq_lens: tuple[int, ...]


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


def packed_response_targets(samples: Sequence[TrainSample]) -> torch.Tensor:
    """Target positions of the packed row (`pack(samples)`) that predict a trained response
    token (environment tokens excluded, as in `response_targets`)."""
    out, offset = [], 0
    for s in samples:
        pos, trained = _trained_targets(s)
        out.append(offset + pos[trained])
        offset += len(s.prompt_ids) + len(s.response_ids)
    return torch.cat(out)


def _trained_targets(s: TrainSample) -> tuple[torch.Tensor, torch.Tensor]:
    """(target positions of the sample's response tokens in its own row, which are trained).
    Response token k is predicted at position len(prompt) - 1 + k; with an empty prompt the
    first response token has no target position and is left out."""
    lo = len(s.prompt_ids) - 1
    pos = torch.arange(lo, lo + len(s.response_ids), dtype=torch.long)
    trained = torch.tensor(s.trained_mask(), dtype=torch.bool) & (pos >= 0)
    return pos, trained


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
