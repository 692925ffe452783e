"""GPUs per actor on a Ray cluster that has GPUs (the GPU half of `placement`).

Without a GPU request Ray leaves an actor's `CUDA_VISIBLE_DEVICES` alone (Ray >= 2.4x no longer
blanks it for zero-GPU actors), so every rank and worker would see all of a node's GPUs and use
`cuda:0`.  Each actor therefore requests its share, and Ray's assignment becomes the device it
sees as `cuda:0`:

- `disaggregated`: every rollout worker and every trainer rank requests one whole GPU
  (`critic.placement: separate` critic ranks and the in-training evaluator too), so the stages
  run on separate GPUs at the same time: the placement for asynchronous training (`auto` with
  `async.mode: async`).
- `colocated` (the hybrid engine of verl / OpenRLHF / TRL; `auto` with `async.mode: sync`):
  GPU i holds trainer rank i and rollout worker i, half a GPU each, in bundle i of one Ray
  placement group, so they are guaranteed the same device.  They take turns
  (rlkit.runtime.placement.hybrid): vLLM runs in sleep mode and releases its weights and KV
  cache while the trainer trains; the trainer offloads its DeepSpeed states (parameters, gradients,
  optimizer) to host memory while vLLM generates.  Needs `async.mode: sync` and
  `rollout.num_workers == trainer.world_size`.

On a CPU-only cluster nothing is requested and `placement` is the thread policy of
rlkit.runtime.placement.threads.  GPU-only paths: tests/integration/test_hybrid_gpu.py (`gpu` mark).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GpuShares:
    """What each actor requests: GPUs of a rollout worker / trainer rank / separate critic
    rank / the in-training evaluator, and whether the policy's stages share GPUs (the hybrid
    engine)."""

    worker: float = 0.0
    rank: float = 0.0
    critic: float = 0.0
    evaluator: float = 0.0
    hybrid: bool = False


def cluster_gpus() -> float:
    """GPUs of the connected Ray cluster (0 on CPU machines)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def gpu_shares(cfg: Any, gpus: float) -> GpuShares:
    """The recipe's GPU requests on a cluster with `gpus` GPUs; a clear error for layouts the
    hybrid engine cannot run."""
    from rlkit.runtime.placement.threads import resolve

    if gpus <= 0:
        return GpuShares()
    critic = 1.0 if cfg.critic.enabled else 0.0
    evaluator = 1.0 if cfg.eval.every > 0 else 0.0  # its own engine, its own GPU
    if cfg.critic.enabled and cfg.critic.placement == "colocated":
        raise ValueError(
            "critic.placement: colocated shares the trainer's node, not a GPU slice; on a GPU "
            "cluster use critic.placement: separate (one GPU per critic rank)"
        )
    if resolve(cfg) != "colocated":
        return GpuShares(worker=1.0, rank=1.0, critic=critic, evaluator=evaluator)
    if cfg.async_.mode != "sync":
        raise ValueError(
            "placement: colocated on GPUs needs async.mode: sync (rollout and training take "
            "turns on the same GPUs); use placement: disaggregated for asynchronous training"
        )
    if cfg.trainer.weight_sync == "nccl":
        raise ValueError(
            "placement: colocated on GPUs needs trainer.weight_sync: object_store (an NCCL "
            "group cannot hold trainer rank 0 and the rollout worker that share its GPU)"
        )
    if cfg.rollout.num_workers != cfg.trainer.world_size:
        raise ValueError(
            f"placement: colocated on GPUs puts one rollout worker and one trainer rank on each "
            f"GPU: rollout.num_workers ({cfg.rollout.num_workers}) must equal "
            f"trainer.world_size ({cfg.trainer.world_size})"
        )
    return GpuShares(worker=0.5, rank=0.5, critic=critic, evaluator=evaluator, hybrid=True)


def hybrid_bundles(cfg: Any) -> Any:
    """The placement group of the hybrid engine: one bundle per GPU holding trainer rank i and
    rollout worker i (their CPUs and one GPU), packed onto as few nodes as possible."""
    import ray
    from ray.util.placement_group import placement_group

    cpus = cfg.trainer.rank_cpus + cfg.rollout.worker_cpus
    group = placement_group([{"GPU": 1.0, "CPU": cpus}] * cfg.trainer.world_size, strategy="PACK")
    ray.get(group.ready())
    return group


def in_bundle(group: Any, index: int) -> dict:
    """Actor options that place an actor in bundle `index` of `group` (None: no options)."""
    if group is None:
        return {}
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {
        "scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=index
        )
    }
