"""`report.md` with PNG plots (matplotlib, Agg backend) for one evaluation.

Math: accuracy by level/difficulty (when the data has `level`) and a response-length histogram.
Rec: HR@K and NDCG@K curves. Without matplotlib the report is written without plots and says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from rlkit.eval.metrics import REC_KS


def _pyplot() -> Any | None:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _math_plots(plt: Any, samples: list[dict[str, Any]], out: Path) -> list[tuple[str, str]]:
    """Length histogram and (if levels exist) accuracy by level; returns (title, file) pairs."""
    made = []
    unit = "tokens" if all(s.get("num_tokens") is not None for s in samples) else "chars"
    lengths = [s["num_tokens"] if unit == "tokens" else len(s["completion"]) for s in samples]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(lengths, bins=min(50, max(5, len(set(lengths)))))
    ax.set_xlabel(f"response length ({unit})")
    ax.set_ylabel("samples")
    fig.tight_layout()
    fig.savefig(out / "length_hist.png", dpi=100)
    plt.close(fig)
    made.append(("Response length", "length_hist.png"))
    by_level: dict[str, list[bool]] = defaultdict(list)
    for s in samples:
        if "level" in s:
            by_level[str(s["level"])].append(bool(s["correct"]))
    if by_level:
        levels = sorted(by_level, key=lambda x: (len(x), x))
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.bar(levels, [sum(by_level[k]) / len(by_level[k]) for k in levels])
        ax.set_xlabel("level")
        ax.set_ylabel("accuracy (all samples)")
        ax.set_ylim(0, 1)
        fig.tight_layout()
        fig.savefig(out / "accuracy_by_level.png", dpi=100)
        plt.close(fig)
        made.append(("Accuracy by level", "accuracy_by_level.png"))
    return made


def _rec_plots(plt: Any, metrics: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    """HR@K and NDCG@K against K."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("HR", "NDCG"):
        ax.plot(REC_KS, [metrics[f"{name}@{k}"] for k in REC_KS], marker="o", label=f"{name}@K")
    ax.set_xlabel("K")
    ax.set_xticks(REC_KS)
    ax.set_ylabel("value")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "hr_ndcg.png", dpi=100)
    plt.close(fig)
    return [("HR@K and NDCG@K", "hr_ndcg.png")]


def write_report(results: dict[str, Any], kind: str, samples: list[dict[str, Any]], out: Path):
    """Write `out/report.md` (+ PNGs); returns the list of files written."""
    plt = _pyplot()
    plots: list[tuple[str, str]] = []
    if plt is not None:
        if kind == "math":
            plots = _math_plots(plt, samples, out)
        else:
            plots = _rec_plots(plt, results["metrics"], out)
    lines = [f"# Evaluation: {results['suite']}", "", f"Model: `{results['model']}`", ""]
    lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in results["metrics"].items()]
    lines += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in results["settings"].items()]
    lines.append("")
    if plt is None:
        lines += ["(plots skipped: matplotlib is not installed)", ""]
    for title, fname in plots:
        lines += [f"## {title}", "", f"![{title}]({fname})", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return ["report.md", *(f for _, f in plots)]
