"""Metrics of a run: `runs/<name>/metrics.jsonl` (one JSON object per training step),
TensorBoard scalars under `runs/<name>/tb/`, and a progress line on the console."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rlkit.runtime.controller.trackers import TrackerSet


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLogger:
    """Appends one line per step (flushed, so a crash loses nothing already logged)."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        tensorboard: bool = True,
        console: bool = True,
        total_steps: int | None = None,
        stream: TextIO = sys.stdout,
        purge_step: int | None = None,
        trackers: TrackerSet | None = None,
    ):
        """`purge_step`: a resumed run's first step; TensorBoard drops events logged at or
        after it by the interrupted run, so every step appears once.  `trackers`: W&B/MLflow
        (rlkit.runtime.controller.trackers), fed every record and closed with the logger."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge_step)
            except ImportError:  # tensorboard not installed: the jsonl still has everything
                self._tb = None
        self._console = console
        self._trackers = trackers
        self._total = total_steps
        self._stream = stream

    def log(self, metrics: dict[str, Any]) -> None:
        step = int(metrics["step"])
        self._file.write(json.dumps({k: _jsonable(v) for k, v in metrics.items()}) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self._tb.add_scalar(k, v, step)
        if self._trackers is not None:
            self._trackers.log(metrics)
        if self._console:
            total = f"/{self._total}" if self._total else ""
            self._stream.write(
                f"[rlkit] step {step}{total}  reward {metrics.get('reward/mean', 0):.3f}  "
                f"len {metrics.get('response_length/mean', 0):.1f}  "
                f"stale {metrics.get('staleness/mean', 0):.2f}  "
                f"tok/s {metrics.get('throughput/tokens_per_s', 0):.0f}  "
                f"{metrics.get('time/step_s', 0):.2f}s/step\n"
            )
            self._stream.flush()

    def log_eval(self, result: dict[str, Any]) -> None:
        """One evaluation (keys `eval/<suite>/<metric>`) at training step `result["step"]`."""
        with open(self.run_dir / "eval.jsonl", "a") as f:
            f.write(json.dumps(result) + "\n")
        if self._tb is not None:
            for k, v in result.items():
                if k != "step":
                    self._tb.add_scalar(k, v, int(result["step"]))
        if self._trackers is not None:
            self._trackers.log(result)
        if self._console:
            shown = "  ".join(
                f"{k.split('/')[-1]} {v:.3f}" for k, v in result.items() if k != "step"
            )
            self._stream.write(f"[rlkit] eval @ step {result['step']}: {shown}\n")

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._trackers is not None:
            self._trackers.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All step records of a run (for tests, plots and the benchmark)."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
