"""The resumable state of DeepSpeed engines: model, optimizer, LR scheduler, RNG.

`save_engines` / `load_engines` wrap DeepSpeed's `save_checkpoint` / `load_checkpoint` (every
rank calls them: under ZeRO each rank writes its own optimizer partition) and add each rank's
own torch RNG state (`rng_rank<r>.pt`), which DeepSpeed does not keep: LoRA dropout draws
different masks on every rank, so one shared state would not resume them exactly.  Engine m of
a rank is saved under the tag `engine<m>`, so a trainer (one engine) and a critic group
(M engines) share the code.

The folder must be visible to every rank (one machine, or a shared filesystem on a cluster).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _rng_file(folder: str | Path, m: int) -> Path:
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_initialized() else 0
    return Path(folder) / f"engine{m}" / f"rng_rank{rank}.pt"


def save_engines(engines: list[Any], folder: str | Path) -> None:
    """Write every engine's full training state under `folder/engine<m>/`."""
    import torch

    for m, engine in enumerate(engines):
        rng = {"torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda_rng"] = torch.cuda.get_rng_state()
        engine.save_checkpoint(str(folder), tag=f"engine{m}")
        torch.save(rng, _rng_file(folder, m))


def load_engines(engines: list[Any], folder: str | Path) -> None:
    """Restore what `save_engines` wrote (same engine count, world size and ZeRO layout)."""
    import torch

    for m, engine in enumerate(engines):
        path, _ = engine.load_checkpoint(
            str(folder),
            tag=f"engine{m}",
            load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed state for engine {m} under {folder}")
        rng = torch.load(_rng_file(folder, m), weights_only=True)
        torch.set_rng_state(rng["torch_rng"])
        if "cuda_rng" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda_rng"])
