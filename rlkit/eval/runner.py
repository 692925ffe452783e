"""`run_suite` / `evaluate_suite`: the library entry points (the CLI and the trainer call these).

The trainer can evaluate every N steps with the rollout engine it already holds:

    metrics = run_suite("gsm8k", engine=engine, tokenizer=tok, data="gsm8k_test.jsonl",
                        settings={"limit": 200, "max_tokens": 512, "progress": False})

Grading runs in the calling thread; call from the main thread so that math-verify's timeouts
work (rlkit.eval.grading).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.eval.data import (
    EvalInputError,
    load_items,
    load_math_rows,
    load_predictions,
    load_rec_rows,
)
from rlkit.eval.generation import EvalSettings
from rlkit.eval.suites import SuiteSpec, get_suite


@dataclass
class EvalResult:
    """Everything one evaluation produced (the CLI writes it out; run_suite keeps `metrics`)."""

    suite: str
    kind: str
    metrics: dict[str, Any]
    samples: list[dict[str, Any]]
    rows: list[dict[str, Any]] = field(default_factory=list)


def load_suite_data(
    spec: SuiteSpec, data: Any, items: Any = None
) -> tuple[list[dict[str, Any]], list[str] | None]:
    """(canonical rows, catalogue titles or None) for a suite.

    `data`: a path (file; for ml-100k the directory of atomic files), already-canonical rows
    (a list of dicts), or None (math suites: the hub dataset). `items`: an items file path, a
    list of titles, or None (ml-100k then uses its converted catalogue).
    """
    catalogue = list(items) if isinstance(items, (list, tuple)) else None
    if isinstance(items, (str, Path)):
        catalogue = load_items(items)
    if isinstance(data, list):
        return data, catalogue
    if spec.kind == "math":
        return load_math_rows(spec, data), catalogue
    if spec.kind == "code":
        from rlkit.eval.humaneval import load_humaneval_rows

        return load_humaneval_rows(data), catalogue
    if data is None:
        raise EvalInputError(f"suite {spec.name!r} needs --data")
    if spec.name == "ml-100k":
        return _ml100k_rows(data, catalogue)
    return load_rec_rows(data), catalogue


def _ml100k_rows(data: Any, catalogue: list[str] | None) -> tuple[list[dict], list[str]]:
    """The chronological test split of ml-100k as canonical rec rows."""
    from rlkit.eval.movielens import convert_ml100k

    if not Path(data).is_dir():
        raise EvalInputError(f"{data}: ml-100k needs --data DIR holding ml-100k.inter/.item")
    splits, titles = convert_ml100k(data)
    rows = [
        {
            "id": str(i),
            "user_id": s["user_id"],
            "history": s["history_item_title"],
            "target": s["item_title"],
        }
        for i, s in enumerate(splits["test"])
    ]
    return rows, catalogue if catalogue is not None else list(dict.fromkeys(titles.values()))


def evaluate_suite(
    suite: str,
    *,
    engine: Any = None,
    tokenizer: Any = None,
    data: Any = None,
    items: Any = None,
    settings: EvalSettings | dict[str, Any] | None = None,
    predictions: str | Path | None = None,
) -> EvalResult:
    """Evaluate a model (engine + tokenizer) or a predictions JSONL on one suite."""
    spec = get_suite(suite)
    cfg = EvalSettings.from_any(settings)
    rows, catalogue = load_suite_data(spec, data, items)
    all_ids = {r["id"] for r in rows}
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    preds = None
    if predictions is not None:
        keep = {r["id"] for r in rows}
        # code predictions are completion rows, as math ones are
        kind = "rec" if spec.kind == "rec" else "math"
        loaded = load_predictions(predictions, kind, all_ids)
        preds = {k: v for k, v in loaded.items() if k in keep}
    elif engine is None or tokenizer is None:
        raise ValueError("evaluate_suite needs engine and tokenizer, or predictions")
    if spec.kind in ("math", "code"):
        from rlkit.eval import humaneval, math_eval

        suite_module = math_eval if spec.kind == "math" else humaneval
        metrics, samples = math_eval.evaluate_graded(
            rows, cfg, suite_module, engine=engine, tokenizer=tokenizer, predictions=preds
        )
    else:
        from rlkit.eval.rec_eval import evaluate_rec

        metrics, samples = evaluate_rec(
            rows, catalogue, cfg, engine=engine, tokenizer=tokenizer, predictions=preds
        )
    return EvalResult(suite, spec.kind, metrics, samples, rows)


def run_suite(
    suite: str,
    *,
    engine: Any,
    tokenizer: Any,
    data: Any,
    items: Any = None,
    settings: EvalSettings | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of `engine` on `suite` (e.g. {"pass@1": ..} or {"HR@10": .., "NDCG@10": ..})."""
    return evaluate_suite(
        suite, engine=engine, tokenizer=tokenizer, data=data, items=items, settings=settings
    ).metrics
