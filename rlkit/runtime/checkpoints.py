"""The run's checkpoints `checkpoints/step_<n>/` and `trainer.keep_last`.

A checkpoint folder holds
    config.json, tokenizer files, model.safetensors   the policy as an HF folder (vLLM and
                                                      transformers load it as is)
    trainer_state/                                    DeepSpeed state of every trainer rank
                                                      (not with `trainer.save_optimizer: false`)
    critic_state/                                     the same for the critics (PPO, AsyPPO)
    queue.pkl                                         the rollout queue: buffered and running
                                                      groups (rlkit.runtime.controller.queue_state)
    run_state.json                                    the controller's state (rlkit.runtime.resume)
and is written atomically (rlkit.engines.model_io.atomic_folder): everything goes into the
hidden `.step_<n>.tmp/` and is renamed into place only when whole, so a crash mid-save leaves the
previous checkpoints intact and loadable.

Disk: with the optimizer state a checkpoint is about 4x the fp32 weights (Adam's two moments
and ZeRO's fp32 master copy), so `keep_last` defaults to 2, and `trainer.save_optimizer: false`
writes weight-only checkpoints (no `trainer_state/`): a resume from one restarts the optimizer
and is not exact (rlkit.runtime.resume says so).

Saving does not stop training (`start_checkpoint`): at the controller's step boundary the
trainer ranks snapshot their state into host memory (rlkit.engines.snapshot) and the
controller takes its own state; the files are written by background threads while the next
steps train, and the folder is renamed into place when all are on disk.  One save is in flight
at a time (the next waits for it), and the atomic rule is unchanged: until the rename the
checkpoint is only the hidden `.step_<n>.tmp/`.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STEP = re.compile(r"step_(\d+)")
RUN_STATE = "run_state.json"
QUEUE = "queue.pkl"  # a run state's `queue` entry: token ids and log-probs, too big for JSON
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


def start_checkpoint(
    checkpoint_dir: str | Path,
    step: int,
    trainer: Any,
    critic: Any = None,
    run_state: Callable[[], dict] | None = None,
    *,
    optimizer: bool = True,
) -> PendingCheckpoint:
    """Checkpoint `step` without waiting for the disk.  Now, at the step boundary: the
    trainer's snapshot (`trainer.start_save`), the critics' state and `run_state()`.  Then a
    thread waits for the trainer's writes, writes run_state.json last and renames the folder
    into place (rlkit.engines.model_io.atomic_folder: an error or a crash before that leaves
    only the hidden temporary folder)."""
    from rlkit.engines.model_io import atomic_folder

    t0 = time.perf_counter()
    out = Path(checkpoint_dir) / f"step_{step}"
    folder = atomic_folder(out)
    tmp = folder.__enter__()
    try:
        written = _start_trainer(trainer, tmp, optimizer)
        if critic is not None:
            critic.save_state(str(tmp))
        state = None if run_state is None else run_state()
    except BaseException as exc:
        folder.__exit__(type(exc), exc, exc.__traceback__)  # removes the temporary folder
        raise

    def finish() -> None:
        try:
            written()
            if state is not None:
                _write_run_state(tmp, state)
        except BaseException as exc:
            folder.__exit__(type(exc), exc, exc.__traceback__)
            raise
        folder.__exit__(None, None, None)  # fsync, rename into place

    return PendingCheckpoint(out, step, finish, t0)


def _write_run_state(folder: Path, state: dict) -> None:
    """`state`'s `queue` entry to queue.pkl, then the rest to run_state.json (last: it marks
    the checkpoint resumable)."""
    import pickle

    state = dict(state)
    queue = state.pop("queue", None)
    if queue is not None:
        (folder / QUEUE).write_bytes(pickle.dumps(queue, protocol=pickle.HIGHEST_PROTOCOL))
    (folder / RUN_STATE).write_text(json.dumps(state, indent=1))


def _start_trainer(trainer: Any, tmp: Path, optimizer: bool) -> Callable[[], None]:
    """Start the trainer's part (TrainerGroup.start_save); returns the wait for its files."""
    trainer.start_save(str(tmp), optimizer)

    def written() -> None:
        while not trainer.save_done():
            time.sleep(0.05)

    return written


class PendingCheckpoint:
    """A checkpoint being written in the background (`start_checkpoint`)."""

    def __init__(self, out: Path, step: int, finish: Callable[[], None], t0: float) -> None:
        from rlkit.engines.snapshot import BackgroundWrite

        self.out, self.step, self.t0 = out, step, t0
        self.blocked_s = time.perf_counter() - t0  # the part the training step waited for
        self.save_s = 0.0
        self.write = BackgroundWrite(lambda: self._timed(finish))

    def _timed(self, finish: Callable[[], None]) -> None:
        finish()
        self.save_s = time.perf_counter() - self.t0

    def done(self) -> bool:
        """Whether it is on disk (a failed write raises here)."""
        return self.write.done()

    def wait(self) -> Path:
        self.write.done(wait=True)
        return self.out

    def metrics(self) -> dict[str, float]:
        """`ckpt/*` of a finished save: its step, size, total and blocking seconds."""
        return {
            "ckpt/step": float(self.step),
            "ckpt/bytes": float(folder_bytes(self.out)),
            "ckpt/save_s": self.save_s,
            "ckpt/blocked_s": self.blocked_s,
        }


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
    """run_state.json, with queue.pkl under `queue` when the checkpoint has one."""
    import pickle

    state = json.loads((Path(checkpoint) / RUN_STATE).read_text())
    queue = Path(checkpoint) / QUEUE
    if queue.is_file():
        state["queue"] = pickle.loads(queue.read_bytes())
    return state
