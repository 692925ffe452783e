"""Where the reference model (the KL anchor π_ref) runs: inside every trainer rank.

As in verl (the reference shares the actor's worker group) and OpenRLHF (`colocate_actor_ref`),
the reference is a frozen copy of the initial policy held by each trainer rank process, beside
the rank's policy:

- on GPUs it is on the rank's GPU (the rank's share: a whole GPU disaggregated, half of it in
  the hybrid engine's bundle), in the recipe's `model.dtype`: no GPU of its own, and its weights
  cost 2 bytes per parameter in bfloat16;
- on CPU it runs on the trainer rank's threads (`trainer_threads`: the cores the trainer holds,
  every core's share when the placement is colocated), since the reference pass runs in the
  credit stage, while the rank does not train;
- it scores in micro-batches of the trainer's size (`micro_layout`), padded or packed as the
  trainer (`trainer.packing`), never the whole step in one forward; each rank scores an even
  share of the step.

`reference_plan` is the decision, a pure function of the recipe and the cluster's GPU count
(unit-tested for every shipped GPU recipe, tests/unit/runtime/test_reference_placement.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReferencePlan:
    """What a trainer rank builds for the reference model."""

    device: str  # "cuda" (the rank's own GPU) or "cpu"
    gpu_share: float  # GPUs of the process that holds it (the trainer rank's share; 0 on CPU)
    dtype: str  # the recipe's model.dtype
    micro_batch: int  # samples per forward: the trainer's micro-batch
    packing: bool  # padding-free micro-batches, as the trainer (trainer.packing)
    threads: int  # CPU: the trainer rank's torch threads; 0 on GPU (not set)


def reference_plan(cfg: Any, gpus: float) -> ReferencePlan | None:
    """The reference of the recipe `cfg` on a cluster with `gpus` GPUs; None without KL
    (`algo.kl_beta` 0)."""
    from rlkit.engines.deepspeed_engine import micro_layout
    from rlkit.runtime.placement.gpus import gpu_shares
    from rlkit.runtime.placement.threads import trainer_threads

    if cfg.algo.kl_beta <= 0:
        return None
    t = cfg.trainer
    micro, _ = micro_layout(cfg.samples_per_step, t.world_size, t.mini_batches, t.micro_batch_size)
    common = {"dtype": cfg.model.dtype, "micro_batch": micro, "packing": t.packing}
    if gpus > 0:
        share = gpu_shares(cfg, gpus).rank
        return ReferencePlan(device="cuda", gpu_share=share, threads=0, **common)
    return ReferencePlan(
        device="cpu", gpu_share=0.0, threads=trainer_threads(cfg, t.world_size), **common
    )
