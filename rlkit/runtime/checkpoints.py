"""The run's checkpoints `checkpoints/step_<n>/` and `trainer.keep_last`.

A checkpoint folder holds
    config.json, tokenizer files, model.safetensors   the policy as an HF folder (vLLM and
                                                      transformers load it as is)
    trainer_state/                                    DeepSpeed state of every trainer rank
    critic_state/                                     the same for the critics (PPO, AsyPPO)
    run_state.json                                    the controller's state (rlkit.runtime.resume)
and is written atomically (rlkit.engines.model_io.atomic_folder): everything goes into the
hidden `.step_<n>.tmp/` and is renamed into place only when whole, so a crash mid-save leaves the
previous checkpoints intact and loadable.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STEP = re.compile(r"step_(\d+)")
RUN_STATE = "run_state.json"


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


def write_checkpoint(
    checkpoint_dir: str | Path,
    step: int,
    trainer: Any,
    critic: Any = None,
    run_state: Callable[[], dict] | None = None,
) -> Path:
    """Checkpoint `step` atomically: trainer (HF folder + DeepSpeed state), critics, and the
    controller's `run_state()` last."""
    from rlkit.engines.model_io import atomic_folder

    out = Path(checkpoint_dir) / f"step_{step}"
    with atomic_folder(out) as tmp:
        trainer.save_checkpoint(str(tmp))
        if critic is not None:
            critic.save_state(str(tmp))
        if run_state is not None:
            (tmp / RUN_STATE).write_text(json.dumps(run_state(), indent=1))
    return out


def step_of(checkpoint: str | Path) -> int:
    """The step of a checkpoint folder `step_<n>`."""
    return int(_STEP.fullmatch(Path(checkpoint).name).group(1))


def latest_resumable(checkpoint_dir: str | Path) -> Path | None:
    """The newest checkpoint that holds the training state (not only model weights)."""
    found = [p for p in step_folders(checkpoint_dir) if (p / RUN_STATE).is_file()]
    return found[-1] if found else None


def read_run_state(checkpoint: str | Path) -> dict:
    return json.loads((Path(checkpoint) / RUN_STATE).read_text())
