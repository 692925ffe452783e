"""Recommendation evaluation: a ranking of catalogue items per row, then HR/NDCG@K.

A model's rankings come from a registered ranker (`REC_RANKERS`); the built-in one is ReRe's
evaluation (arXiv 2510.12211, docs/algorithms.md §6, docs/rere.md; rlkit.methods.rere.ranker):
`num_beams` beams (default 20) constrained by the item trie (fewer when the catalogue is
smaller), best first.  Rank = 0-based index of the first beam whose title equals the target;
HR@K and NDCG@K over ALL test rows for K in {1,3,5,10,20}. A beam that is not a catalogue
title (possible only from predictions, or a beam cut by max_tokens) is invalid: it is a miss
that keeps its rank slot, and `invalid_rate` = invalid beams / all returned beams.

Given predictions take the same path: their titles are checked against the catalogue (when
`--items` is given) and ranked with the same `first_rank`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlkit.algos.registry import Registry
from rlkit.eval.errors import EvalInputError
from rlkit.eval.generation import EvalSettings
from rlkit.eval.metrics import first_rank, rec_metrics

REC_RANKERS: Registry = Registry("recommendation ranker")
MODEL_RANKER = "constrained_beam"  # ReRe's (rlkit.methods.rere.ranker), the paper's evaluation


def register_rec_ranker(name: str, *, override: bool = False):
    """Register `fn(rows, catalogue, engine, tokenizer, settings) -> rankings`, one
    {"items": [title | None, ...], "scores": [...]} per row, best first."""
    return REC_RANKERS.register(name, override=override)


def rankings_from_predictions(
    rows: Sequence[dict[str, Any]],
    preds: dict[str, list[dict[str, Any]]],
    catalogue: Sequence[str] | None,
) -> list[dict[str, Any]]:
    """Per row {"items": [...]} from prediction lines (the first line of an id wins).

    With a catalogue, titles outside it become None (invalid); a row with no line gets [].
    """
    known = set(catalogue) if catalogue is not None else None
    out = []
    for row in rows:
        recs = preds.get(row["id"]) or [{"items": []}]
        items = [None if t is None else str(t).strip() for t in recs[0]["items"]]
        if known is not None:
            items = [t if t in known else None for t in items]
        out.append({"items": items, "missing": row["id"] not in preds})
    return out


def score_rankings(
    rows: Sequence[dict[str, Any]],
    rankings: Sequence[dict[str, Any]],
    catalogue: Sequence[str] | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics, samples): rank per row, HR/NDCG@K, invalid and coverage counts."""
    samples = []
    total = invalid = 0
    for row, rk in zip(rows, rankings, strict=True):
        items = rk["items"]
        total += len(items)
        invalid += sum(t is None for t in items)
        rec = {
            "id": row["id"],
            "user_id": row.get("user_id", ""),
            "target": row["target"],
            "items": items,
            "rank": first_rank(items, row["target"]),
        }
        for key in ("scores", "missing"):
            if key in rk:
                rec[key] = rk[key]
        samples.append(rec)
    metrics: dict[str, Any] = rec_metrics([s["rank"] for s in samples])
    metrics["invalid_rate"] = invalid / total if total else 0.0
    metrics["num_rows"] = len(rows)
    metrics["num_items_returned"] = total
    metrics["missing_predictions"] = sum(bool(s.get("missing")) for s in samples)
    if catalogue is not None:
        known = set(catalogue)
        metrics["catalogue_size"] = len(known)
        metrics["targets_not_in_catalogue"] = sum(r["target"] not in known for r in rows)
    return metrics, samples


def evaluate_rec(
    rows: Sequence[dict[str, Any]],
    catalogue: Sequence[str] | None,
    settings: EvalSettings,
    *,
    engine: Any = None,
    tokenizer: Any = None,
    predictions: dict[str, list[dict[str, Any]]] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics, samples) from a model (engine + tokenizer + catalogue) or from predictions."""
    if predictions is not None:
        rankings = rankings_from_predictions(rows, predictions, catalogue)
    else:
        if not catalogue:
            raise EvalInputError("rec evaluation with a model needs a catalogue (--items)")
        ranker = REC_RANKERS[MODEL_RANKER]
        rankings = ranker(rows, catalogue, engine, tokenizer, settings)
    return score_rankings(rows, rankings, catalogue)
