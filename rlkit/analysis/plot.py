"""`compare.png`: one metric over steps, a line per group (mean over its runs) with its 95%
interval shaded."""

from __future__ import annotations

from pathlib import Path

from rlkit.analysis.compare import Curve


def plot_curves(curves: dict[str, Curve], metric: str, out: Path) -> Path | None:
    """Draw the curves to `out`; None when matplotlib is missing (compare.json still holds the
    numbers)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        (line,) = ax.plot(c.steps, c.mean, label=name)
        ax.fill_between(c.steps, c.lo, c.hi, color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean ± 95% interval over runs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
