"""Evaluation metrics: pass@k / avg@k for math, HR@K / NDCG@K for recommendation.

Pure Python (no torch), so the trainer and tests can call them anywhere.

- Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", eq. 1):
  with n samples of which c are correct, pass@k = 1 - C(n-c, k) / C(n, k), averaged over problems.
  Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) (the numerically stable product form of the same
  ratio, from the paper's reference code).
- avg@k: mean accuracy over all k samples of all problems (= the unbiased pass@1 estimate).
- HR@K / NDCG@K (ReRe arXiv 2510.12211, docs/algorithms.md §6): with `rank` the 0-based position
  of the first prediction equal to the target (None = miss), HR@K = mean[rank < K] and
  NDCG@K = mean[1/log2(rank + 2) if rank < K else 0]; one relevant item, so IDCG = 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

REC_KS = (1, 3, 5, 10, 20)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem: 1 - C(n-c, k)/C(n, k); needs 1 <= k <= n, 0 <= c <= n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean unbiased pass@k over problems given (n, c) per problem."""
    vals = [pass_at_k(n, c, k) for n, c in counts]
    return sum(vals) / len(vals) if vals else 0.0


def pass_k_values(n: int) -> list[int]:
    """The k reported for n samples: powers of two from 2 up to n, and n itself."""
    ks = [k for k in (2**i for i in range(1, 31)) if k <= n]
    if n >= 2 and n not in ks:
        ks.append(n)
    return ks


def first_rank(ranked: Sequence[str | None], target: str) -> int | None:
    """0-based rank of the first prediction equal to `target`, None when absent.

    Duplicate titles are one item: each title counts only at its first position and later
    repeats are dropped before ranking (so a repeat does not push the target down). Invalid
    predictions (None) keep their slot: an invalid beam is a miss that still occupies a rank.
    """
    seen: set[str] = set()
    rank = 0
    for title in ranked:
        if title is not None:
            if title in seen:
                continue
            seen.add(title)
            if title == target:
                return rank
        rank += 1
    return None


def rec_metrics(ranks: Sequence[int | None], ks: Sequence[int] = REC_KS) -> dict[str, float]:
    """HR@K and NDCG@K over all rows (a None rank is a miss); the denominator is len(ranks)."""
    n = len(ranks)
    out: dict[str, float] = {}
    for k in ks:
        hits = [r for r in ranks if r is not None and r < k]
        out[f"HR@{k}"] = len(hits) / n if n else 0.0
        out[f"NDCG@{k}"] = sum(1.0 / math.log2(r + 2) for r in hits) / n if n else 0.0
    return out


def math_metrics(
    groups: dict[str, list[bool]],
    greedy: dict[str, bool],
    lengths: Sequence[int],
    truncated: Sequence[bool | None],
    length_unit: str = "tokens",
) -> dict[str, Any]:
    """Math metrics from per-problem sampled correctness and greedy correctness.

    `groups[id]` = correctness of the sampled (non-greedy) completions, `greedy[id]` = whether the
    greedy completion was correct. pass@1 is the greedy accuracy when greedy samples exist, else
    avg@n (the unbiased pass@1 of the samples); `pass@1_source` says which. Lengths are in
    `length_unit` (tokens from a model run, characters when scoring text predictions).
    """
    out: dict[str, Any] = {}
    sampled = {k: v for k, v in groups.items() if v}
    if greedy:
        out["pass@1"] = sum(greedy.values()) / len(greedy)
    if sampled:
        n = min(len(v) for v in sampled.values())
        counts = [(len(v), sum(v)) for v in sampled.values()]
        out[f"avg@{n}"] = sum(c / m for m, c in counts) / len(counts)
        out.setdefault("pass@1", out[f"avg@{n}"])
        for k in pass_k_values(n):
            out[f"pass@{k}"] = mean_pass_at_k(counts, k)
    out["pass@1_source"] = "greedy" if greedy else "sampled"
    out["num_problems"] = len(set(groups) | set(greedy))
    out["mean_response_length"] = sum(lengths) / len(lengths) if lengths else 0.0
    out["response_length_unit"] = length_unit
    known = [t for t in truncated if t is not None]
    out["truncation_rate"] = sum(known) / len(known) if known else None
    return out
