"""`runs/<name>/curves.png`: reward, response length, staleness and step time per step, written
at the end of a run (also `python -m rlkit.runtime.controller.plots RUN_DIR` on a run in
progress)."""

from __future__ import annotations

import sys
from pathlib import Path

PANELS = [
    ("reward/mean", "reward"),
    ("response_length/mean", "response length"),
    ("staleness/mean", "staleness (versions)"),
    ("time/step_s", "seconds / step"),
]


def plot_run(run_dir: str | Path) -> Path | None:
    """Draw the run's curves from metrics.jsonl; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from rlkit.runtime.controller.metrics_logger import read_metrics

    rows = read_metrics(run_dir)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3))
    for ax, (key, title) in zip(axes, PANELS):
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
        ax.set_title(title)
        ax.set_xlabel("step")
    fig.suptitle(Path(run_dir).name)
    fig.tight_layout()
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(plot_run(sys.argv[1]))
