"""Run directories as `rlkit compare` reads them: which runs a group holds, and one metric's
values over the steps of each run (from `metrics.jsonl`, one JSON object per training step)."""

from __future__ import annotations

import json
import os
from pathlib import Path

METRICS = "metrics.jsonl"


class CompareError(ValueError):
    """A group or run that cannot be compared; the message names the path and what is wrong."""


def group_name(group_dir: str | Path) -> str:
    """The group's base name as given (`runs/grpo/` -> `grpo`, `.` -> the folder's own name)."""
    return Path(os.path.abspath(group_dir)).name


def group_runs(group_dir: str | Path) -> list[Path]:
    """The runs of a group: the directory itself when it holds `metrics.jsonl`, else its
    subdirectories that do (the seeds of `rlkit train --seeds N`: seed_0, seed_1, ...).

    A subdirectory that is a run (it has the `config.yaml` every run writes first) but has no
    metrics yet is an error, not a silent omission: dropping a crashed seed would bias the mean.
    """
    root = Path(group_dir)
    if not root.is_dir():
        raise CompareError(f"{root}: not a directory")
    if (root / METRICS).is_file():
        return [root]
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    unfinished = [
        p for p in subdirs if (p / "config.yaml").is_file() and not (p / METRICS).is_file()
    ]
    if unfinished:
        raise CompareError(f"run {unfinished[0]} has no {METRICS} (did it start?)")
    runs = [p for p in subdirs if (p / METRICS).is_file()]
    if not runs:
        raise CompareError(f"{root}: no {METRICS} in it or in any of its subdirectories")
    return runs


def _rows(run_dir: Path) -> list[dict]:
    rows = []
    path = run_dir / METRICS
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CompareError(f"{path}:{lineno}: not JSON ({exc.msg})") from exc
    return rows


def metric_series(run_dir: str | Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) for every logged step whose row has `metric` (a non-finite value is
    logged as null and counts as absent), in step order."""
    run_dir = Path(run_dir)
    rows = _rows(run_dir)
    points = sorted(
        (int(r.get("step", i)), float(r[metric]))
        for i, r in enumerate(rows, 1)
        if isinstance(r.get(metric), (int, float)) and not isinstance(r.get(metric), bool)
    )
    if not points:
        known = sorted({k for r in rows for k in r if k != "step"})
        hint = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        raise CompareError(
            f"run {run_dir} has no metric {metric!r} in {METRICS} (it logs: {hint or 'nothing'})"
        )
    return points
