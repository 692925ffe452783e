"""A prefix trie over the token ids of every catalogue item, for constrained beam search (ReRe).

ReRe (arXiv 2510.12211, see docs/algorithms.md §6) generates the next item's title formatted as
`"Title"\\n` and constrains beam search so that only catalogue items can come out: a prefix trie
over the tokenisation of `response_prefix + '"' + title + '"\\n' + EOS` for every item; at every
step the allowed next tokens are the children of the node reached by the tokens generated so far,
every other token gets -inf (after the full-vocabulary log-softmax, which is the engine's job).

Layout (compact, built once): the distinct sequences are rows of one int32 matrix padded with -1
and sorted lexicographically. The sequences sharing a prefix of length d are then one contiguous
row range whose column d is sorted, so a trie node is just `(lo, hi, depth)`: a child is found by
binary search in that column and the children are the distinct values of the column slice. For
50,000 titles this takes a few MB (no per-node Python dicts) and builds in well under a second
(see benchmarks/constrained_beam.py).

The response is tokenised on its own (`add_special_tokens=False`), which is what the model
generates after the prompt. Duplicate titles, and distinct titles with the same token ids, are
one item (the first title is kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

_PAD = -1  # padding of the row matrix (never a token id; sorts before every token)


def format_item(title: str, response_prefix: str = "") -> str:
    """The response text of one item: `response_prefix + '"' + title + '"\\n'` (no EOS)."""
    return f'{response_prefix}"{title}"\n'


class TrieNode(NamedTuple):
    """Rows [lo, hi) share the first `depth` tokens (the path from the root to this node)."""

    lo: int
    hi: int
    depth: int


class ItemTrie:
    """Token-id prefix trie of catalogue items; answers "which tokens may come next".

    Build it with `from_tokenizer` (the usual way), from `{title: token_ids}`, or from a plain list
    of token-id sequences (`from_sequences`; then items have no titles). A sequence that does not
    end with the EOS id gets it appended. Incremental walks: `root`, `child`, `children`.
    """

    def __init__(
        self, sequences: Mapping[str, Sequence[int]] | Sequence[Sequence[int]], eos_token_id: int
    ) -> None:
        self.eos_token_id = int(eos_token_id)
        if isinstance(sequences, Mapping):
            names: list[str | None] = list(sequences.keys())
            seqs = list(sequences.values())
        else:
            seqs = list(sequences)
            names = [None] * len(seqs)
        self._build([self._with_eos(s) for s in seqs], names)

    @classmethod
    def from_sequences(cls, sequences: Sequence[Sequence[int]], eos_token_id: int) -> ItemTrie:
        """A trie of untitled items given as token ids (each ending with EOS, else appended)."""
        return cls(sequences, eos_token_id)

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        titles: Iterable[str],
        *,
        response_prefix: str = "",
        eos_token_id: int | None = None,
    ) -> ItemTrie:
        """Tokenise `response_prefix + '"' + title + '"\\n'` per title and append EOS.

        `tokenizer` is an HF tokenizer (anything with `encode(text, add_special_tokens=False)`).
        `eos_token_id` defaults to `tokenizer.eos_token_id`.
        """
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id; pass eos_token_id explicitly")
        unique = list(dict.fromkeys(titles))
        texts = [format_item(t, response_prefix) for t in unique]
        if callable(tokenizer) and hasattr(tokenizer, "batch_decode"):
            encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        else:
            encoded = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
        return cls({t: [*ids, int(eos)] for t, ids in zip(unique, encoded)}, int(eos))

    # ------------------------------------------------------------------ build
    def _with_eos(self, ids: Sequence[int]) -> list[int]:
        out = [int(t) for t in ids]
        if not out or out[-1] != self.eos_token_id:
            out.append(self.eos_token_id)
        return out

    def _build(self, seqs: list[list[int]], names: list[str | None]) -> None:
        """Pad, sort lexicographically and de-duplicate (first occurrence keeps its title)."""
        width = max((len(s) for s in seqs), default=1)
        rows = np.full((len(seqs), width), _PAD, dtype=np.int32)
        for i, s in enumerate(seqs):
            rows[i, : len(s)] = s
        if len(seqs):
            uniq, first = np.unique(rows, axis=0, return_index=True)
        else:
            uniq, first = rows, np.zeros(0, dtype=np.int64)
        self._rows = np.ascontiguousarray(uniq)
        self._lens = (self._rows != _PAD).sum(axis=1).astype(np.int32)
        order = np.sort(first)  # distinct items in insertion order
        self._titles: list[str | None] = [names[i] for i in order]
        rank = np.empty(len(seqs), dtype=np.int64)
        rank[order] = np.arange(len(order))
        self._item_of_row = rank[first].astype(np.int32)
        self._root_children: list[int] | None = None

    # ------------------------------------------------------------------ walking
    @property
    def root(self) -> TrieNode:
        """The node of the empty prefix."""
        return TrieNode(0, len(self._rows), 0)

    def child(self, node: TrieNode, token: int) -> TrieNode | None:
        """The node after `token`, or None when the path leaves the trie."""
        if node.depth >= self._rows.shape[1] or node.lo >= node.hi:
            return None
        col = self._rows[node.lo : node.hi, node.depth]
        a = int(np.searchsorted(col, token, side="left"))
        b = int(np.searchsorted(col, token, side="right"))
        if a == b or token == _PAD:
            return None
        return TrieNode(node.lo + a, node.lo + b, node.depth + 1)

    def children(self, node: TrieNode) -> list[int]:
        """The allowed next token ids at `node`, sorted ([] after EOS)."""
        if node.depth == 0 and node.hi == len(self._rows) and self._root_children is not None:
            return self._root_children
        if node.depth >= self._rows.shape[1] or node.lo >= node.hi:
            return []
        col = self._rows[node.lo : node.hi, node.depth]
        keep = np.empty(len(col), dtype=bool)
        keep[0] = True
        np.not_equal(col[1:], col[:-1], out=keep[1:])
        out = [int(t) for t in col[keep] if t != _PAD]
        if node.depth == 0:
            self._root_children = out
        return out

    def walk(self, prefix: Sequence[int]) -> TrieNode | None:
        """The node reached by `prefix`, or None when the prefix leaves the trie."""
        node: TrieNode | None = self.root
        for tok in prefix:
            node = self.child(node, int(tok))
            if node is None:
                return None
        return node

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        """Number of distinct items."""
        return len(self._rows)

    @property
    def titles(self) -> list[str | None]:
        """The distinct item titles in insertion order (None for untitled items)."""
        return list(self._titles)

    @property
    def nbytes(self) -> int:
        """Bytes held by the trie's arrays (titles not counted)."""
        return int(self._rows.nbytes + self._lens.nbytes + self._item_of_row.nbytes)

    def sequences(self) -> list[list[int]]:
        """Every distinct item's token ids (with EOS), in sorted order."""
        return [r[:n].tolist() for r, n in zip(self._rows, self._lens)]

    def allowed(self, prefix_token_ids: Sequence[int]) -> list[int]:
        """Token ids allowed after `prefix_token_ids` (sorted).

        An empty list means "only EOS" (the Protocol's convention): returned after a complete
        item (EOS already generated) and for a prefix that is not in the trie.
        """
        node = self.walk(prefix_token_ids)
        return [] if node is None else self.children(node)

    def make_allowed_fn(self) -> Callable[[Sequence[int]], list[int]]:
        """An `AllowedTokensFn` (legacy form; prefer passing the trie as `allowed_sequences`)."""
        return self.allowed

    def item_index(self, token_ids: Sequence[int]) -> int | None:
        """Insertion index of the item whose tokens are `token_ids` (EOS optional), else None."""
        ids = [int(t) for t in token_ids]
        while ids and ids[-1] == self.eos_token_id:
            ids.pop()
        node = self.walk([*ids, self.eos_token_id])
        if node is None or self._lens[node.lo] != node.depth:
            return None
        return int(self._item_of_row[node.lo])

    def decode_item(self, token_ids: Sequence[int]) -> str | None:
        """The title whose tokens are `token_ids` (trailing EOS optional), else None."""
        idx = self.item_index(token_ids)
        return None if idx is None else self._titles[idx]
