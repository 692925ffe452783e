"""The run's checkpoints `checkpoints/step_<n>/` and `trainer.keep_last`.

A checkpoint folder holds
    config.json, tokenizer files, model.safetensors   the policy as an HF folder (vLLM and
                                                      transformers load it as is)
    trainer_state/                                    DeepSpeed state of every trainer rank
                                                      (not with `trainer.save_optimizer: false`)
    critic_state/                                     the same for the critics (PPO, AsyPPO)
    run_state.json                                    the controller's state (rlkit.runtime.resume)
and is written atomically (rlkit.engines.model_io.atomic_folder): everything goes into the
hidden `.step_<n>.tmp/` and is renamed into place only when whole, so a crash mid-save leaves the
previous checkpoints intact and loadable.

Disk: with the optimizer state a checkpoint is about 4x the fp32 weights (Adam's two moments
and ZeRO's fp32 master copy), so `keep_last` defaults to 2, and `trainer.save_optimizer: false`
writes weight-only checkpoints (no `trainer_state/`): a resume from one restarts the optimizer
and is not exact (rlkit.runtime.resume says so).
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
TRAINER_STATE = "trainer_state"


def step_folders(checkpoint_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (hidden `.step_<n>.tmp/.old` ones are not)."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.fullmatch(p.name))]
    return [p for _, p in sorted(found) if p.is_dir()]


def prune(checkpoint_dir: str | Path, keep_last: int) -> list[Path]:
    """Remove all but the newest `keep_last` checkpoints (0 keeps all; the newest is always
    kept); returns the removed."""
    if keep_last <= 0:
        return []
    gone = step_folders(checkpoint_dir)[: -max(1, keep_last)]
    for p in gone:
        shutil.rmtree(p)
    return gone


def write_checkpoint(
    checkpoint_dir: str | Path,
    step: int,
    trainer: Any,
    critic: Any = None,
    run_state: Callable[[], dict] | None = None,
    *,
    optimizer: bool = True,
) -> Path:
    """Checkpoint `step` atomically: trainer (HF folder + DeepSpeed state; the weights only
    when not `optimizer`), critics, and the controller's `run_state()` last."""
    from rlkit.engines.model_io import atomic_folder

    out = Path(checkpoint_dir) / f"step_{step}"
    with atomic_folder(out) as tmp:
        trainer.save_checkpoint(str(tmp), optimizer=optimizer)
        if critic is not None:
            critic.save_state(str(tmp))
        if run_state is not None:
            (tmp / RUN_STATE).write_text(json.dumps(run_state(), indent=1))
    return out


def has_trainer_state(checkpoint: str | Path) -> bool:
    """Whether a checkpoint holds the trainer's optimizer state (an exact resume point) or
    only its weights (`trainer.save_optimizer: false`)."""
    return (Path(checkpoint) / TRAINER_STATE).is_dir()


def folder_bytes(folder: str | Path) -> int:
    """Bytes of every file under `folder` (the `ckpt/bytes` metric)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def step_of(checkpoint: str | Path) -> int:
    """The step of a checkpoint folder `step_<n>`."""
    return int(_STEP.fullmatch(Path(checkpoint).name).group(1))


def latest_resumable(checkpoint_dir: str | Path) -> Path | None:
    """The newest checkpoint that holds the training state (not only model weights)."""
    found = [p for p in step_folders(checkpoint_dir) if (p / RUN_STATE).is_file()]
    return found[-1] if found else None


def read_run_state(checkpoint: str | Path) -> dict:
    return json.loads((Path(checkpoint) / RUN_STATE).read_text())
