"""Weight publishing: new policy weights from the trainer group to every rollout worker.

CPU and GPU: safetensors bytes through Ray's object store, loaded by each worker between engine
steps.  GPU clusters: an NCCL broadcast from trainer rank 0 (`trainer.weight_sync: nccl`).

The publisher keeps the ObjectRef of the last weights it sent (one model's bytes stay in the
object store) so that a replacement rollout worker starts from the current policy
(rlkit.runtime.controller.worker_restarts).
"""

from __future__ import annotations

from typing import Any


class WeightPublisher:
    def __init__(self, trainer: Any, workers: list, mode: str):
        self.trainer, self.workers, self.mode = trainer, workers, mode
        self.last: tuple[Any, int] | None = None  # (ObjectRef of the bytes, version)

    def publish(self, version: int) -> None:
        """Send the trainer's current weights as `version` (non-blocking)."""
        if self.mode == "nccl":  # receivers run concurrently with the broadcast
            for w in self.workers:
                w.receive_nccl.remote(self.trainer.nccl_specs, version)
            self.trainer.broadcast_weights_async()
            return
        # the previous bytes leave the object store first: two copies of the model may not fit
        # (Ray then writes the new one to disk, seconds a step on CPU)
        self.last = None
        blob = self.trainer.export_weights_async()
        self.last = (blob, version)
        for w in self.workers:
            w.load_weights.remote(blob, version)
