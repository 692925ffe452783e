"""The run's checkpoint folders `checkpoints/step_<n>/` (HF model folders written atomically by
rlkit.engines.model_io.save_hf_folder) and `trainer.keep_last`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

_STEP = re.compile(r"step_(\d+)")


def step_folders(checkpoint_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (hidden `.step_<n>.tmp/.old` ones are not)."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.fullmatch(p.name))]
    return [p for _, p in sorted(found) if p.is_dir()]


def prune(checkpoint_dir: str | Path, keep_last: int) -> list[Path]:
    """Remove all but the newest `keep_last` checkpoints (0 keeps all); returns the removed."""
    if keep_last <= 0:
        return []
    gone = step_folders(checkpoint_dir)[:-keep_last]
    for p in gone:
        shutil.rmtree(p)
    return gone
