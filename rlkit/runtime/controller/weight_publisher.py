"""Weight publishing: new policy weights from the trainer group to every rollout worker.

CPU and GPU, three routes:
- one host (a single-node Ray cluster): trainer rank 0 writes a safetensors file in shared
  memory (/dev/shm) and the workers load it from its path.  Nothing goes through the object
  store: on 2 CPU cores the bytes route cost ~2 s a step for SmolLM2-135M (0.75 s to serialise,
  a copy into the object store and one out, a write to a file for vLLM), the file ~1 s;
- several hosts: safetensors bytes through Ray's object store, loaded by each worker between
  engine steps;
- GPU clusters: an NCCL broadcast from trainer rank 0 (`trainer.weight_sync: nccl`).

The publisher keeps the ObjectRef of the last weights it sent (one model's bytes, or the file,
stay available) so that a replacement rollout worker starts from the current policy
(rlkit.runtime.controller.worker_restarts).  Before a new export it waits for every load of
the previous weights (a step ago, long finished), since rank 0 replaces the previous file.
"""

from __future__ import annotations

from typing import Any


def single_host() -> bool:
    """Whether the Ray cluster has one live node (every actor shares its /dev/shm); False
    without a cluster (a Spine built for inspection)."""
    import ray

    return ray.is_initialized() and sum(1 for n in ray.nodes() if n.get("Alive")) == 1


class WeightPublisher:
    def __init__(self, trainer: Any, workers: list, mode: str, via_file: bool = False):
        """`via_file`: publish through a shared-memory file (only when every worker shares
        trainer rank 0's host, `single_host`)."""
        self.trainer, self.workers, self.mode = trainer, workers, mode
        self.via_file = via_file and mode != "nccl"
        self.last: tuple[Any, int] | None = None  # (ObjectRef of the bytes or path, version)
        self._loads: list = []  # the workers' load calls of the last weights

    def publish(self, version: int) -> None:
        """Send the trainer's current weights as `version` (non-blocking)."""
        if self.mode == "nccl":  # receivers run concurrently with the broadcast
            for w in self.workers:
                w.receive_nccl.remote(self.trainer.nccl_specs, version)
            self.trainer.broadcast_weights_async()
            return
        if self.via_file and self._loads:  # rank 0 is about to replace the file they read
            import ray

            ray.wait(self._loads, num_returns=len(self._loads))
        # the previous bytes leave the object store first: two copies of the model may not fit
        # (Ray then writes the new one to disk, seconds a step on CPU)
        self.last = None
        weights = self.trainer.export_weights_async(self.via_file)
        self.last = (weights, version)
        self._loads = [w.load_weights.remote(weights, version) for w in self.workers]

    def send_last(self, worker: Any) -> int:
        """Load the last published weights on `worker` (a replacement); their version, 0 when
        nothing was published yet (the new engine loads the run's initial model itself)."""
        if self.last is None:
            return 0
        weights, version = self.last
        self._loads.append(worker.load_weights.remote(weights, version))
        return version
