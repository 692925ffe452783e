"""A rank's checkpoint in two halves: a snapshot in host memory, then a background write.

Why: writing DeepSpeed's state (about 4x the fp32 weights with Adam) to disk takes seconds to
minutes, and a step that waits for it idles the trainer.  `snapshot_engines` runs DeepSpeed's
own `save_checkpoint` (through rlkit.engines.train_state.save_engines) with its checkpoint
engine swapped for one that serialises every file into memory instead of onto disk: the bytes
are this step's state, whatever the next step does to the live tensors.  `BackgroundWrite`
then puts them on disk in a thread while the rank trains on.  The files and their layout are
exactly those of a direct save, so `load_engines` reads them unchanged.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

HeldFile = tuple[str, bytes]  # (path, serialised contents)


def _memory_engine(inner: Any) -> Any:
    """A DeepSpeed CheckpointEngine that keeps what `save` is given as bytes (`files`) and
    delegates loading to `inner`; directories are made for real (DeepSpeed writes its small
    `latest` file and rlkit its RNG files directly)."""
    import torch
    from deepspeed.runtime.checkpoint_engine.checkpoint_engine import CheckpointEngine

    class MemoryCheckpointEngine(CheckpointEngine):
        def __init__(self) -> None:
            super().__init__()
            self.name = "rlkit-memory"
            self.files: list[HeldFile] = []

        def create(self, info) -> None:
            pass

        def save(self, state_dict, path: str) -> None:
            buf = io.BytesIO()
            torch.save(state_dict, buf)
            self.files.append((str(path), buf.getvalue()))

        def load(self, path: str, map_location=None):
            return inner.load(path, map_location)

        def commit(self, info) -> bool:
            return True

    return MemoryCheckpointEngine()


def snapshot_engines(engines: list[Any], folder: str | Path) -> list[HeldFile]:
    """`save_engines(engines, folder)` with DeepSpeed's state files held in memory (returned,
    to be written by `write_held`); every rank of the group calls it, as `save_engines`."""
    from rlkit.engines.train_state import save_engines

    real = [e.checkpoint_engine for e in engines]
    held = [_memory_engine(r) for r in real]
    for engine, mem in zip(engines, held):
        engine.checkpoint_engine = mem
    try:
        save_engines(engines, folder)
    finally:
        for engine, r in zip(engines, real):
            engine.checkpoint_engine = r
    return [f for mem in held for f in mem.files]


def write_held(files: list[HeldFile]) -> None:
    """Write the held files to their paths (flushed to disk; the folder's rename is the
    commit, rlkit.engines.model_io.atomic_folder)."""
    for path, data in files:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


class BackgroundWrite:
    """`write()` in a daemon thread (a killed process leaves only the hidden temporary folder
    of its checkpoint); `done(wait)` reports it and re-raises its error in the caller."""

    def __init__(self, write: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(write,), daemon=True)
        self.thread.start()

    def _run(self, write: Callable[[], None]) -> None:
        try:
            write()
        except BaseException as exc:  # handed to whoever asks `done`
            self.error = exc

    def done_now(self) -> bool:
        """Finished (well or not), without raising."""
        return not self.thread.is_alive()

    def done(self, wait: bool = False) -> bool:
        if wait:
            self.thread.join()
        if self.thread.is_alive():
            return False
        if self.error is not None:
            raise self.error
        return True
