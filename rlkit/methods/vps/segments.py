"""Cutting a response into reasoning segments for GRPO-VPS (docs/algorithms.md §3, docs/vps.md).

The paper's exact segmentation rule is not public; these are the documented defaults. Everything
works on *token* offsets so that the boundaries can be used directly on ``response_ids``. Text is
only used to find where lines end: every token is decoded on its own and the pieces are joined.

Rules (in order):

1. Separators. A *blank-line break* is a run of characters matching ``\\n[ \\t\\r]*\\n\\s*`` (two
   or more newlines, possibly with whitespace-only lines between). The cut is placed at the first
   token offset at or after the end of the run, so the separator stays with the segment before it
   (if the run ends inside a token, that whole token belongs to the earlier segment).
2. Fallback. If the blank-line breaks give fewer than 2 segments, runs of single newlines
   (``\\n\\s*``) are used instead, with the same placement rule.
3. Cuts at offset 0 or at the end are dropped; the last boundary is always ``len(response)``.
4. Merge short. While there are at least 2 segments and the shortest has fewer than
   ``min_tokens`` tokens, it is merged into its shorter neighbour (ties: the previous one; the
   first and last segment have only one neighbour). Among equally short segments the earliest
   goes first.
5. Cap. While there are more than ``max_segments`` segments, the adjacent pair with the smallest
   combined length is merged (ties: the earliest pair).

An empty response has no segments (``[]``).

Multi-turn responses (a ``loss_mask`` with 0 on the tokens an environment wrote,
rlkit.engines.rollout_protocol.Completion): :func:`turn_segment_boundaries` cuts every model
turn by the rules above on its own and makes every environment turn one segment, so no segment
mixes model and environment tokens; :func:`model_segments` says which segments are the model's.
The change of belief across an environment segment is the environment's doing, not the
policy's, so GRPO-VPS gives it no credit (rlkit.methods.vps.advantage).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

BLANK_LINE = re.compile(r"\n[ \t\r]*\n\s*")
NEWLINE = re.compile(r"\n\s*")


def piece_decoder(tokenizer: Any) -> Callable[[int], str]:
    """A cached ``token id -> text`` function decoding each token on its own."""
    cache: dict[int, str] = {}

    def decode(token_id: int) -> str:
        if token_id not in cache:
            cache[token_id] = tokenizer.decode([token_id])
        return cache[token_id]

    return decode


def _cuts(pieces: Sequence[str], pattern: re.Pattern[str]) -> list[int]:
    """Token offsets (strictly inside 0..n) right after each separator run matched by pattern."""
    ends = list(accumulate(len(p) for p in pieces))  # char end of token t = ends[t]
    text = "".join(pieces)
    n = len(pieces)
    cuts: list[int] = []
    for m in pattern.finditer(text):
        b = bisect_left(ends, m.end()) + 1  # first token offset whose char start >= m.end()
        if 0 < b < n and (not cuts or b > cuts[-1]):
            cuts.append(b)
    return cuts


def _merge_short(lengths: list[int], min_tokens: int) -> list[int]:
    """Rule 4: merge the shortest segment under min_tokens into its shorter neighbour."""
    while len(lengths) > 1:
        k = min(range(len(lengths)), key=lambda j: lengths[j])
        if lengths[k] >= min_tokens:
            break
        prev = lengths[k - 1] if k > 0 else None
        nxt = lengths[k + 1] if k + 1 < len(lengths) else None
        j = k - 1 if nxt is None or (prev is not None and prev <= nxt) else k + 1
        lo = min(j, k)
        lengths[lo : lo + 2] = [lengths[lo] + lengths[lo + 1]]
    return lengths


def _cap(lengths: list[int], max_segments: int) -> list[int]:
    """Rule 5: merge the adjacent pair with the smallest combined length until <= max_segments."""
    while len(lengths) > max_segments:
        lo = min(range(len(lengths) - 1), key=lambda j: lengths[j] + lengths[j + 1])
        lengths[lo : lo + 2] = [lengths[lo] + lengths[lo + 1]]
    return lengths


def boundaries_from_pieces(
    pieces: Sequence[str], *, min_tokens: int = 32, max_segments: int = 16
) -> list[int]:
    """Segment ends [b_1, ..., b_K] (token offsets, b_K = len(pieces)) from per-token texts.

    See the module docstring for the exact rules. ``min_tokens=0`` disables merging of short
    segments.
    """
    if max_segments < 1:
        raise ValueError(f"max_segments must be >= 1, got {max_segments}")
    n = len(pieces)
    if n == 0:
        return []
    cuts = _cuts(pieces, BLANK_LINE)
    if not cuts:
        cuts = _cuts(pieces, NEWLINE)
    edges = [0, *cuts, n]
    lengths = [b - a for a, b in zip(edges, edges[1:])]
    lengths = _cap(_merge_short(lengths, min_tokens), max_segments)
    return list(accumulate(lengths))


def segment_boundaries(
    response_ids: Sequence[int],
    decode_piece: Callable[[int], str] | Any,
    *,
    min_tokens: int = 32,
    max_segments: int = 16,
) -> list[int]:
    """Segment ends [b_1, ..., b_K] of a response, as token offsets with b_K = len(response_ids).

    ``decode_piece`` maps one token id to its text (e.g. ``piece_decoder(tokenizer)``); a
    tokenizer (anything with ``.decode``) is also accepted. Rules: module docstring. The belief
    probes are taken at [0, *boundaries].
    """
    if hasattr(decode_piece, "decode"):  # a tokenizer (HF tokenizers are callable: encode)
        decode_piece = piece_decoder(decode_piece)
    pieces = [decode_piece(int(t)) for t in response_ids]
    return boundaries_from_pieces(pieces, min_tokens=min_tokens, max_segments=max_segments)


def turn_segment_boundaries(
    response_ids: Sequence[int],
    loss_mask: Sequence[int] | None,
    decode_piece: Callable[[int], str] | Any,
    *,
    min_tokens: int = 32,
    max_segments: int = 16,
) -> list[int]:
    """Segment ends of a multi-turn response: every maximal run of model tokens (``loss_mask``
    1) cut by :func:`segment_boundaries` (``min_tokens`` and ``max_segments`` per model turn),
    every run of environment tokens (0) one segment.  ``loss_mask`` None: one model turn, the
    same ends as :func:`segment_boundaries`."""
    if loss_mask is None:
        return segment_boundaries(
            response_ids, decode_piece, min_tokens=min_tokens, max_segments=max_segments
        )
    if len(loss_mask) != len(response_ids):
        raise ValueError(f"{len(loss_mask)} loss_mask entries for {len(response_ids)} tokens")
    ends: list[int] = []
    for a, b in _runs(loss_mask):
        if loss_mask[a]:
            cut = segment_boundaries(
                response_ids[a:b], decode_piece, min_tokens=min_tokens, max_segments=max_segments
            )
            ends += [a + e for e in cut]
        else:
            ends.append(b)
    return ends


def model_segments(segment_ends: Sequence[int], loss_mask: Sequence[int] | None) -> list[bool]:
    """Per segment [b_{k-1}, b_k): True when it holds a model token (``loss_mask`` 1; every
    segment when ``loss_mask`` is None)."""
    starts = [0, *segment_ends[:-1]]
    if loss_mask is None:
        return [True] * len(segment_ends)
    return [any(loss_mask[a:b]) for a, b in zip(starts, segment_ends)]


def _runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    """[a, b) of every maximal run of equal values of ``mask``."""
    out, a = [], 0
    for t in range(1, len(mask) + 1):
        if t == len(mask) or bool(mask[t]) != bool(mask[a]):
            out.append((a, t))
            a = t
    return out
