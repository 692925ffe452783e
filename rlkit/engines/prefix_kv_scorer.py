"""Next-token scoring that extends the previous call's KV cache: beam search at one token a beam.

A step-by-step search (constrained beams, rlkit.methods.rere.beam_search) asks at every step for
the next-token log-softmax after each live beam, and every beam is a beam of the previous step
plus one token. Scoring each prefix from scratch costs its whole length per step; transformers
`generate(num_beams=G)` keeps a KV cache, but first copies the prompt G times and prefills every
copy, and then copies every beam's whole cache twice a step (reorder, concatenate).

`PrefixKVScorer` keeps, between calls, the KV cache of every prefix it scored (keyed by the
prefix's token ids), in two parts:

- the **prompt**: prefixes with no cached parent are prefilled (left-padded, padding masked,
  true positions), and their keys and values are kept once, however many beams grow from them;
- each beam's **suffix**: the keys and values of the tokens after its prompt, a few dozen
  positions, copied from its parent into the next step's buffer (position-major, one copy).

A prefix whose parent (all tokens but the last) was scored in the previous call costs ONE token:
the rows of one prompt block form a users x beams batch, and the HF engine's attention
(rlkit.engines.shared_prompt_attention) lets each beam attend over its user's prompt and its own
suffix. Each row is the unbatched computation up to float reduction order (beams equal
transformers' to 1e-4 in score, tests/unit/engines/test_prefix_kv_scorer.py).

Memory: one prompt cache per user plus a suffix per live beam (32 users x 220 prompt tokens and
512 beams x 33 tokens of SmolLM2-135M in float32: ~0.3 + 0.8 GB, where whole per-beam caches
would take ~6 GB). A scorer lives for one search (`HFEngine.beam_scorer()`); dropping it frees
the cache. Only plain `DynamicCache` layers are extended; other cache kinds (sliding windows,
linear attention) are scored from scratch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Per layer (keys, values) of a beam-suffix block, position-major: (length, rows, kv_heads, dim).
KVBlock = list[tuple[Any, Any]]


@dataclass(frozen=True)
class PromptBlock:
    """The prompts of one prefill forward: per layer (keys, values), each (rows, kv_heads,
    width, dim), left-padded; `pad[r]` padding positions before row r's prompt."""

    layers: list[tuple[Any, Any]]
    pad: list[int]

    @property
    def width(self) -> int:
        return int(self.layers[0][0].shape[2])


@dataclass(frozen=True)
class CachedRow:
    """A scored prefix: its prompt (block, row), its suffix (block, row; None when the prefix
    is the prompt itself) and suffix length."""

    prompt: PromptBlock
    user: int
    suffix: KVBlock | None
    row: int
    suffix_len: int


class PrefixKVScorer:
    """`NextTokenScorer` over an HF causal LM that reuses the previous call's KV cache."""

    def __init__(self, model: Any, device: Any, max_batch_tokens: int = 8192) -> None:
        self.model, self.device, self.max_batch_tokens = model, device, max_batch_tokens
        self._memo: dict[tuple[int, ...], CachedRow] = {}
        self.extended = 0  # prefixes scored from a parent's cache (one token each)
        self.prefilled = 0  # prefixes scored from scratch

    def __call__(
        self,
        prefixes: Sequence[Sequence[int]],
        candidates: Sequence[Sequence[int] | None],
        top_k: int = 20,
    ) -> list[dict[int, float]]:
        """{token: full-vocab logprob} per prefix at its candidate ids (top_k ids when None)."""
        out: list[dict[int, float]] = [{} for _ in prefixes]
        memo: dict[tuple[int, ...], CachedRow] = {}
        keys = [tuple(int(t) for t in p) for p in prefixes]
        for rows, logits, cached in self._forwards(keys):
            logp = logits.float().log_softmax(-1).cpu()
            for r, i in enumerate(rows):
                out[i] = _read_logprobs(logp[r], candidates[i], top_k)
                if cached[r] is not None:
                    memo[keys[i]] = cached[r]
        self._memo = memo
        return out

    def _forwards(self, keys: list[tuple[int, ...]]):
        """(prefix indices, their last-position logits, their CachedRow or None) per forward."""
        groups: dict[tuple[int, int], list[int]] = {}
        fresh = []
        for i, k in enumerate(keys):
            parent = self._memo.get(k[:-1]) if len(k) > 1 else None
            if parent is None:
                fresh.append(i)
            else:  # one forward per prompt block and suffix length (all beams of a search)
                groups.setdefault((id(parent.prompt), parent.suffix_len), []).append(i)
        for rows in groups.values():
            self.extended += len(rows)
            yield self._extend(keys, rows)
        self._memo = {}  # the previous step's suffixes are freed before any prefill
        fresh.sort(key=lambda i: len(keys[i]))
        for chunk in _token_chunks(keys, fresh, self.max_batch_tokens):
            self.prefilled += len(chunk)
            yield self._prefill(keys, chunk)

    def _prefill(self, keys: list[tuple[int, ...]], chunk: list[int]):
        """Score whole prefixes, left-padded to the longest; they become prompts."""
        import torch

        width = max(len(keys[i]) for i in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for r, i in enumerate(chunk):
            ids[r, width - len(keys[i]) :] = torch.tensor(keys[i])
            mask[r, width - len(keys[i]) :] = 1
        dev = self.device
        with torch.no_grad():
            out = self.model(
                input_ids=ids.to(dev),
                attention_mask=None if bool(mask.all()) else mask.to(dev),
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(dev),
                use_cache=True,
                logits_to_keep=1,
            )
        layers = _layers_of(out.past_key_values)
        if layers is None:
            return chunk, out.logits[:, -1], [None] * len(chunk)
        block = PromptBlock(layers, [width - len(keys[i]) for i in chunk])
        cached = [CachedRow(block, r, None, 0, 0) for r in range(len(chunk))]
        return chunk, out.logits[:, -1], cached

    def _extend(self, keys: list[tuple[int, ...]], rows: list[int]):
        """One new token per prefix, over its user's prompt and its parent's suffix: the rows
        laid out users x beams (short users padded with copies of their first row, dropped)."""
        import torch
        from transformers.cache_utils import Cache

        parents = {i: self._memo[keys[i][:-1]] for i in rows}
        prompt, t = parents[rows[0]].prompt, parents[rows[0]].suffix_len
        by_user: dict[int, list[int]] = {}
        for i in sorted(
            rows, key=lambda i: (parents[i].user, id(parents[i].suffix), parents[i].row)
        ):
            by_user.setdefault(parents[i].user, []).append(i)  # sorted: suffix rows in runs
        users, beams = sorted(by_user), max(len(v) for v in by_user.values())
        layout = [by_user[u][min(b, len(by_user[u]) - 1)] for u in users for b in range(beams)]
        real = [b < len(by_user[u]) for u in users for b in range(beams)]
        order = [parents[i] for i in layout]
        slot = _slot_layer_class()
        layers = [slot(*_gather(order, layer, t), filled=t) for layer in range(len(prompt.layers))]
        cache = Cache(layers=layers)
        shared = _select_prompts(prompt, users, beams)
        ids = torch.tensor([[keys[i][-1]] for i in layout], device=self.device)
        positions = torch.tensor([[len(keys[i]) - 1] for i in layout], device=self.device)
        with torch.no_grad():
            out = self.model(
                input_ids=ids,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
                rlkit_shared_prompt=shared,
            )
        # the slot layers now hold the t + 1 suffix positions of every row
        block = [
            (layer.pm_keys[: layer.filled], layer.pm_values[: layer.filled]) for layer in layers
        ]
        keep = [j for j, ok in enumerate(real) if ok]
        cached = [CachedRow(prompt, parents[layout[j]].user, block, j, t + 1) for j in keep]
        return [layout[j] for j in keep], out.logits[keep, -1], cached


def _select_prompts(prompt: PromptBlock, users: list[int], beams: int):
    """The SharedPrompt of `users` (rows of `prompt`), with their padding masks."""
    import torch

    from rlkit.engines.shared_prompt_attention import SharedPrompt

    layers = prompt.layers
    if users != list(range(len(prompt.pad))):  # a subset: one small copy per layer
        idx = torch.tensor(users, device=layers[0][0].device)
        layers = [(k.index_select(0, idx), v.index_select(0, idx)) for k, v in layers]
    pad = torch.tensor([prompt.pad[u] for u in users], device=layers[0][0].device)
    keep = torch.arange(prompt.width, device=pad.device)[None, :] >= pad[:, None]
    return SharedPrompt(layers, keep, len(users), beams)


def _gather(order: list[CachedRow], layer: int, t: int) -> tuple[Any, Any]:
    """One layer's position-major suffix buffers (t + 1, rows, kv_heads, dim): the parents'
    t suffix positions, and room for the new token."""
    import torch

    like = order[0].prompt.layers[layer][0]
    shape = (t + 1, len(order), like.shape[1], like.shape[3])
    bufs = (like.new_empty(shape), like.new_empty(shape))
    if t == 0:
        return bufs
    runs: list[tuple[KVBlock, list[int], int]] = []  # (block, rows, first buffer row)
    for j, p in enumerate(order):  # consecutive rows of one block: one index_select
        if runs and runs[-1][0] is p.suffix:
            runs[-1][1].append(p.row)
        else:
            runs.append((p.suffix, [p.row], j))
    for block, rows, start in runs:
        idx = torch.tensor(rows, device=like.device)
        for buf, src in zip(bufs, block[layer]):
            if len(runs) == 1:  # a leading slice of a position-major buffer is contiguous
                torch.index_select(src, 1, idx, out=buf[:t])
            else:
                buf[:t, start : start + len(rows)] = src.index_select(1, idx)
    return bufs


@functools.cache
def _slot_layer_class() -> type:
    """A DynamicLayer over preallocated position-major buffers (positions, rows, heads, dim):
    `update` writes the new positions in place, and attention reads (rows, heads, positions,
    dim) views of them (no copy)."""
    from transformers.cache_utils import DynamicLayer

    class SlotLayer(DynamicLayer):
        def __init__(self, keys: Any, values: Any, filled: int) -> None:
            super().__init__()
            self.pm_keys, self.pm_values, self.filled = keys, values, filled
            self.keys, self.values = keys.permute(1, 2, 0, 3), values.permute(1, 2, 0, 3)
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True

        def update(self, key_states: Any, value_states: Any, *args: Any, **kw: Any):
            end = self.filled + key_states.shape[-2]
            self.pm_keys[self.filled : end] = key_states.permute(2, 0, 1, 3)
            self.pm_values[self.filled : end] = value_states.permute(2, 0, 1, 3)
            self.filled = end
            return self.keys[:, :, :end], self.values[:, :, :end]

        def get_seq_length(self) -> int:
            return self.filled

    return SlotLayer


def _layers_of(cache: Any) -> list[tuple[Any, Any]] | None:
    """Per-layer (keys, values) of a plain DynamicCache; None for any other cache kind."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


def _token_chunks(keys: list[tuple[int, ...]], idx: list[int], budget: int) -> list[list[int]]:
    """`idx` (sorted by length) cut into chunks whose padded size stays within `budget` tokens."""
    chunks: list[list[int]] = []
    for i in idx:
        if chunks and (len(chunks[-1]) + 1) * len(keys[i]) <= budget:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def _read_logprobs(row: Any, cand: Sequence[int] | None, top_k: int) -> dict[int, float]:
    """{token: logprob} at the candidate ids, or at the row's top_k ids when cand is None."""
    import torch

    if cand is None:
        vals, idx = row.topk(min(top_k, row.numel()))
        return dict(zip(idx.tolist(), vals.tolist(), strict=True))
    ids = [int(t) for t in cand]
    vals = row[torch.tensor(ids, dtype=torch.long)] if ids else row[:0]
    return dict(zip(ids, vals.tolist(), strict=True))
