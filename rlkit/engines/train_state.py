"""The resumable state of DeepSpeed engines: model, optimizer, LR scheduler, RNG.

`save_engines` / `load_engines` wrap DeepSpeed's `save_checkpoint` / `load_checkpoint` (every
rank calls them: under ZeRO each rank writes its own optimizer partition) and add each rank's
torch RNG state, which DeepSpeed does not keep.  Engine m of a rank is saved under the tag
`engine<m>`, so a trainer (one engine) and a critic group (M engines) share the code.

The folder must be visible to every rank (one machine, or a shared filesystem on a cluster).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_engines(engines: list[Any], folder: str | Path) -> None:
    """Write every engine's full training state under `folder/engine<m>/`."""
    import torch

    for m, engine in enumerate(engines):
        rng = {"torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda_rng"] = torch.cuda.get_rng_state()
        engine.save_checkpoint(str(folder), tag=f"engine{m}", client_state=rng)


def load_engines(engines: list[Any], folder: str | Path) -> None:
    """Restore what `save_engines` wrote (same engine count and ZeRO layout)."""
    import torch

    for m, engine in enumerate(engines):
        path, client = engine.load_checkpoint(
            str(folder),
            tag=f"engine{m}",
            load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed state for engine {m} under {folder}")
        torch.set_rng_state(client["torch_rng"])
        if "cuda_rng" in client and torch.cuda.is_available():
            torch.cuda.set_rng_state(client["cuda_rng"])
