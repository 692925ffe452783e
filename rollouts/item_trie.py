"""A prefix trie over the token ids of every catalogue item, for constrained beam search (ReRe).

ReRe (arXiv 2510.12211, see docs/algorithms.md §6) generates the next item's title formatted as
`"Title"\\n` and constrains beam search so that only catalogue items can come out: a prefix trie
over the tokenisation of `response_prefix + '"' + title + '"\\n' + EOS` for every item; at every
step the allowed next tokens are the children of the node reached by the tokens generated so far,
every other token gets -inf (after the full-vocabulary log-softmax, which is the engine's job).

The response is tokenised on its own (`add_special_tokens=False`), which is what the model
generates after the prompt. Duplicate titles are one item (first id kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

_END = -1  # key of a node's "an item ends here" marker (never a token id)


def format_item(title: str, response_prefix: str = "") -> str:
    """The response text of one item: `response_prefix + '"' + title + '"\\n'` (no EOS)."""
    return f'{response_prefix}"{title}"\n'


class ItemTrie:
    """Token-id prefix trie of catalogue items; answers "which tokens may come next".

    Build it with `from_tokenizer` (the usual way) or directly from `{title: token_ids}` where
    each sequence already ends with the EOS id.
    """

    def __init__(self, sequences: dict[str, Sequence[int]], eos_token_id: int) -> None:
        self.eos_token_id = int(eos_token_id)
        self._root: dict[int, Any] = {}
        self._titles: dict[tuple[int, ...], str] = {}
        for title, ids in sequences.items():
            self._insert(title, [int(t) for t in ids])

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
        seqs: dict[str, list[int]] = {}
        for title in titles:
            if title in seqs:
                continue
            ids = tokenizer.encode(format_item(title, response_prefix), add_special_tokens=False)
            seqs[title] = [*ids, int(eos)]
        return cls(seqs, int(eos))

    def _insert(self, title: str, ids: list[int]) -> None:
        """Add one item; a title whose token ids are already present keeps the first title."""
        if not ids or ids[-1] != self.eos_token_id:
            ids = [*ids, self.eos_token_id]
        key = tuple(ids[:-1])
        if key in self._titles:
            return
        node = self._root
        for tok in ids:
            node = node.setdefault(tok, {})
        node[_END] = title
        self._titles[key] = title

    def __len__(self) -> int:
        """Number of distinct items."""
        return len(self._titles)

    @property
    def titles(self) -> list[str]:
        """The distinct item titles in insertion order."""
        return list(self._titles.values())

    def _walk(self, prefix: Sequence[int]) -> dict[int, Any] | None:
        """The node reached by `prefix`, or None when the prefix leaves the trie."""
        node = self._root
        for tok in prefix:
            nxt = node.get(int(tok))
            if nxt is None:
                return None
            node = nxt
        return node

    def allowed(self, prefix_token_ids: Sequence[int]) -> list[int]:
        """Token ids allowed after `prefix_token_ids` (sorted).

        An empty list means "only EOS" (the Protocol's convention): returned after a complete
        item (EOS already generated) and for a prefix that is not in the trie.
        """
        node = self._walk(prefix_token_ids)
        if node is None:
            return []
        return sorted(k for k in node if k != _END)

    def make_allowed_fn(self) -> Callable[[Sequence[int]], list[int]]:
        """The `AllowedTokensFn` for `RolloutEngine.beam_search(allowed_tokens=...)`."""
        return self.allowed

    def decode_item(self, token_ids: Sequence[int]) -> str | None:
        """The title whose tokens are `token_ids` (trailing EOS optional), else None."""
        ids = [int(t) for t in token_ids]
        while ids and ids[-1] == self.eos_token_id:
            ids.pop()
        return self._titles.get(tuple(ids))
