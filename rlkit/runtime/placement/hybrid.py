"""The hybrid engine (GPU colocated placement): rollout and training take turns on each GPU.

Trainer rank i and rollout worker i share GPU i (rlkit.runtime.placement.gpus).  Memory goes to
the stage that runs, as verl's and OpenRLHF's hybrid engines do:

    generate  ->  [credit: reference, critics, engine probes]  ->  workers sleep,
    trainer reloads its states  ->  train  ->  trainer offloads, workers wake  ->  publish
    the new weights into the awake workers  ->  generate ...

- vLLM sleeps at level 1 (`LLM.sleep`): its weights move to host memory and its KV cache is
  dropped; `wake_up` brings both back (the cache empty).  Needs `enable_sleep_mode=True` when
  the engine is built (`VLLMEngine(sleep_mode=True)`).
- DeepSpeed moves the trainer's ZeRO states (parameters, gradients, optimizer, the contiguous
  gradient buffer) to pinned host memory (`DeepSpeedEngine.offload_states`) and back
  (`reload_states`); a stage-0 group (torch optimizer) has no such states and keeps them.

The switch sits in the training dispatch, after the credit pipeline (engine probes such as
GRPO-VPS beliefs need awake workers) and before the weights are published (loading weights
needs an awake engine).  GPU only; the CPU placement is a thread policy.
"""

from __future__ import annotations

from typing import Any


class HybridSwitch:
    """Moves the GPUs between the rollout workers and the trainer group."""

    def __init__(self, workers: list, trainer: Any):
        self.workers, self.trainer = workers, trainer
        self.switches = 0

    def to_rollout(self) -> None:
        """Trainer states to host memory, then the workers wake (weights back, empty cache)."""
        import ray

        ray.get(self.trainer.offload_states_async())
        ray.get([w.wake_up.remote() for w in self.workers])
        self.switches += 1

    def to_train(self) -> None:
        """Workers sleep (weights to host, KV cache dropped), then the trainer reloads."""
        import ray

        ray.get([w.sleep.remote() for w in self.workers])
        ray.get(self.trainer.reload_states_async())
        self.switches += 1


def make_switch(workers: list, trainer: Any, bundles: Any) -> HybridSwitch | None:
    """The switch of a hybrid run (one that placed its pairs in the placement group `bundles`);
    None for any other run.  The run calls `to_rollout()` once its components are ready (and
    resumed): the trainer's states go to host memory first, since the workers generate the
    first batch."""
    return None if bundles is None else HybridSwitch(workers, trainer)
