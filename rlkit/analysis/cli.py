"""`rlkit compare GROUP_DIR [GROUP_DIR ...] --metric NAME [--last K] --out DIR` (docs/compare.md).

Writes DIR/compare.json (each group's n, mean and 95% interval of its runs' final values; the
difference of two groups with Welch's interval) and DIR/compare.png (mean ± interval curves).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlkit.analysis.compare import curve, summarize
from rlkit.analysis.plot import plot_curves
from rlkit.analysis.runs import CompareError, group_name, group_runs, metric_series


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlkit compare",
        description="Final metric of groups of runs (seeds) with 95% confidence intervals.",
    )
    p.add_argument("groups", nargs="+", metavar="GROUP_DIR", help="a run dir, or a dir of runs")
    p.add_argument("--metric", required=True, help="a key of metrics.jsonl, e.g. reward/mean")
    p.add_argument("--last", type=int, default=5, help="final value = mean of the last K steps")
    p.add_argument("--out", required=True, help="folder for compare.json and compare.png")
    return p


def _interval(mean: float, ci: list[float]) -> str:
    return f"{mean:.4g}  95% CI [{ci[0]:.4g}, {ci[1]:.4g}]"


def _report(result: dict) -> None:
    for g in result["groups"]:
        print(f"{g['name']}: n={g['n']}  {result['metric']} {_interval(g['mean'], g['ci95'])}")
    d = result["difference"]
    if d is not None:
        print(f"difference (second - first): {_interval(d['mean'], d['ci95'])}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # group dirs before or after options
    if args.last < 1:
        print(f"rlkit compare: --last must be at least 1, got {args.last}", file=sys.stderr)
        return 2
    names = [group_name(g) for g in args.groups]
    if len(set(names)) < len(names):
        print(f"rlkit compare: groups must have distinct base names, got {names}", file=sys.stderr)
        return 2
    try:
        series = {
            group_name(g): [metric_series(run, args.metric) for run in group_runs(g)]
            for g in args.groups
        }
    except CompareError as exc:
        print(f"rlkit compare: {exc}", file=sys.stderr)
        return 2
    result = summarize(args.metric, series, args.last)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    png = plot_curves(
        {name: curve(runs) for name, runs in series.items()}, args.metric, out / "compare.png"
    )
    _report(result)
    print(f"wrote {out / 'compare.json'}" + (f" and {png}" if png else " (no matplotlib: no plot)"))
    return 0
