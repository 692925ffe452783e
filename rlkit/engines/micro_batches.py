"""Micro-batch layouts of a training step: by sample count, or by a padded-token budget.

A layout is, for every rank and every mini-batch, the list of micro-batches as index lists into
that rank's chunk of the mini-batch.  The loss does not depend on the layout (every term divides
by the step's global normalisers, rlkit.algos.aggregation), so the layout is free to minimise
padding; but DeepSpeed ZeRO reduces gradients in every backward pass, so every rank must run the
same number of backward passes per optimizer step.  `step_layout` therefore computes all ranks'
layouts together and gives every rank the same micro-batch count per mini-batch.

Token budget (dynamic batch size, as verl's `use_dynamic_bsz` / `ppo_max_token_len_per_gpu`):
rows sorted longest first, a micro-batch grows while `rows x longest row <= budget` (a row
longer than the budget goes alone); ranks with fewer micro-batches then split their largest
ones (most padded tokens) in two until the counts match.

Packed (`trainer.packing`, rlkit.engines.packing): a micro-batch is one row of Σ lengths, so
the budget counts real tokens: first-fit decreasing (each row, longest first, goes into the
first micro-batch it fits, `Σ lengths <= budget`), and splits take the micro-batch with the
most real tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def by_count(n: int, size: int) -> Layout:
    """Contiguous micro-batches of `size` rows (the last one may be smaller)."""
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def by_tokens(lens: Sequence[int], budget: int, packed: bool = False) -> Layout:
    """Greedy token-budget micro-batches over the rows sorted longest first (first-fit
    decreasing on real tokens when `packed`)."""
    order = sorted(range(len(lens)), key=lambda i: (-lens[i], i))
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

    `budget` 0: micro-batches of `micro` samples (equal counts: the chunks are equal in size);
    otherwise token-budget micro-batches (real tokens when `packed`), the count of mini-batch
    k being the largest over the ranks."""
    if budget <= 0:
        return [[by_count(len(c), micro) for c in rank] for rank in chunks]
    lens = [[row_lengths(c) for c in rank] for rank in chunks]
    greedy = [[by_tokens(ls, budget, packed) for ls in rank] for rank in lens]
    minis = len(chunks[0]) if chunks else 0
    counts = [max(len(rank[k]) for rank in greedy) for k in range(minis)]
    return [
        [split_to(greedy[r][k], counts[k], lens[r][k], packed) for k in range(minis)]
        for r in range(len(chunks))
    ]
