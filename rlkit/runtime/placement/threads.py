"""Placement of the rollout and training stages on the machine's cores (recipe key `placement`).

On CPU a placement is a thread-count policy (docs/placement.md):

- `colocated`: the stage that is busy has the whole machine.  In `async.mode: sync` rollout and
  training never overlap, so each stage is given every core's thread: a rollout worker
  `cores // rollout.num_workers` threads, a trainer rank `cores // trainer.world_size` (the
  ranks of one group train at the same time).  vLLM's CPU worker binds its OpenMP threads when
  the engine starts (it refuses `torch.set_num_threads` afterwards), so a colocated vLLM worker
  is started with `VLLM_CPU_OMP_THREADS_BIND` = the node's cores.
- `disaggregated` (what rlkit always did): every actor keeps the threads of the CPUs it
  reserves, `max(1, floor(rollout.worker_cpus))` per rollout worker and
  `max(1, floor(trainer.rank_cpus))` per trainer rank; a vLLM worker keeps vLLM's own
  auto-binding (the node's cores but one).
- `auto`: colocated for `async.mode: sync`, disaggregated otherwise (the stages overlap).

`cores` is `ray.num_cpus` for the embedded cluster (the CPUs the run owns), else the CPUs this
process may run on.  An asynchronous disaggregated trainer borrows the rollout workers' cores
while they idle (rlkit.runtime.placement.core_lease).  On a cluster with GPUs the same key
decides the GPU requests: whole GPUs per actor, or the hybrid engine of verl / OpenRLHF / TRL
(trainer rank i and vLLM worker i sharing GPU i, taking turns; rlkit.runtime.placement.gpus and
.hybrid).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


def resolve(cfg: Any) -> str:
    """`colocated` or `disaggregated` for the recipe (`auto` follows `async.mode`)."""
    if cfg.placement != "auto":
        return cfg.placement
    return "colocated" if cfg.async_.mode == "sync" else "disaggregated"


def run_cores(cfg: Any) -> int:
    """Cores the run owns: the embedded cluster's `ray.num_cpus`, else this node's."""
    if not cfg.ray.address:
        return max(1, int(cfg.ray.num_cpus))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def rollout_threads(cfg: Any) -> int:
    """Threads of one rollout worker while it generates."""
    if resolve(cfg) == "colocated":
        return max(1, run_cores(cfg) // max(1, cfg.rollout.num_workers))
    return max(1, int(cfg.rollout.worker_cpus))


def trainer_threads(cfg: Any, world: int) -> int:
    """Threads of one trainer rank while it trains (all `world` ranks train together)."""
    if resolve(cfg) == "colocated":
        return max(1, run_cores(cfg) // max(1, world))
    return max(1, int(cfg.trainer.rank_cpus))


def lends_cores(cfg: Any) -> bool:
    """Whether the recipe's trainer borrows the rollout workers' cores while they idle
    (rlkit.runtime.placement.core_lease): an asynchronous, disaggregated run on the embedded
    CPU cluster, and only when a rank would get more threads that way (not, e.g., two ranks on
    2 cores)."""
    world = max(1, cfg.trainer.world_size)
    return (
        cfg.async_.mode != "sync"
        and resolve(cfg) == "disaggregated"
        and not cfg.ray.address
        and run_cores(cfg) // world > trainer_threads(cfg, world)
        and not _has_cuda()
    )


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def trainer_idle_threads(cfg: Any, world: int) -> int:
    """Threads of one trainer rank while the rollout workers idle: every core's share when it
    borrows their cores (`lends_cores`), else `trainer_threads`."""
    if lends_cores(cfg):
        return max(1, run_cores(cfg) // max(1, world))
    return trainer_threads(cfg, world)


def vllm_cpu_binding(threads: int, worker_index: int = 0) -> str:
    """`VLLM_CPU_OMP_THREADS_BIND` for a colocated vLLM CPU worker: `threads` of this process's
    allowed CPUs, worker i starting at the i-th block (wrapping around)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cpus:
        cpus = list(range(os.cpu_count() or 1))
    start = worker_index * threads
    return ",".join(str(cpus[(start + k) % len(cpus)]) for k in range(min(threads, len(cpus))))


@dataclass(frozen=True)
class RankThreads:
    """Torch threads of one trainer rank: while it trains, and while the rollout workers idle
    (more only when it borrows their cores, rlkit.runtime.placement.core_lease)."""

    threads: int
    idle_threads: int


def trainer_rank_threads(cfg: Any, world: int) -> RankThreads:
    return RankThreads(trainer_threads(cfg, world), trainer_idle_threads(cfg, world))
