"""Ray set-up: an embedded local cluster on loopback (tests, laptops) or an existing one.

Loopback (Ray 2.60, checked with the listening sockets, tests/integration/test_loopback.py):
Ray's gRPC servers (GCS, raylet, object manager, every core worker) listen on 127.0.0.1 only
when the node address is loopback, and every agent (dashboard agent HTTP + gRPC, runtime-env
agent, metrics export) binds the node address.  `ray.init(_node_ip_address="127.0.0.1")` alone
does not give that: Ray replaces a loopback address by the machine's routable one
(`services.resolve_ip_for_localhost`) unless "cluster mode" is off, and Ray reads that switch
(`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`) once, when `ray` is first imported.  `init_ray` therefore
sets the variable for the processes Ray starts and the already imported constant of the driver.
"""

from __future__ import annotations

import os
from typing import Any

LOOPBACK_ENV = {
    # Ray's "cluster mode" off: the node address stays 127.0.0.1 (see the module docstring).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    # vLLM's engine-core <-> worker sockets, which otherwise use the external interface.
    "VLLM_HOST_IP": "127.0.0.1",
}


def actor_env() -> dict[str, str]:
    """Environment of every actor: one thread per rank, shared torch-extension cache."""
    # vLLM's per-step INFO lines would drown the progress line; override with the env var.
    env = {
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_LOGGING_LEVEL": "WARNING",
    }
    for key in (
        "TORCH_EXTENSIONS_DIR",
        "VLLM_CPU_KVCACHE_SPACE",
        "HF_HUB_OFFLINE",
        "PYTHONPATH",
        "VLLM_LOGGING_LEVEL",
        "VLLM_HOST_IP",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
    ):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def init_ray(address: str | None, num_cpus: float, object_store_mb: int) -> None:
    """Connect to `address`, or start an embedded cluster bound to loopback."""
    if not address:
        os.environ.update(LOOPBACK_ENV)
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    _cluster_mode_off()
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        object_store_memory=object_store_mb * 1024 * 1024,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": actor_env()},
    )


def _cluster_mode_off() -> None:
    """Ray read RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at its import: apply the value set now."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def engine_settings(cfg: Any) -> dict:
    """The recipe's settings of a rollout (or eval) engine."""
    r = cfg.rollout
    block = {"block_size": r.kv_block_size} if r.kv_block_size and r.engine == "vllm" else {}
    return {
        "max_model_len": r.max_model_len,
        "kv_cache_gib": r.kv_cache_gib,
        "seed": cfg.seed,
        "dtype": cfg.model.dtype,
        **block,
    }


def sleep_setting(cfg: Any, hybrid: bool) -> dict:
    """vLLM's sleep mode for the hybrid engine (an HF engine sleeps without it)."""
    return {"sleep_mode": True} if hybrid and cfg.rollout.engine == "vllm" else {}


def start_rollout_workers(
    kind: str,
    model_path: str,
    n: int,
    cpus: float,
    engine_kw: dict,
    threads: int | None = None,
    vllm_bind: bool = False,
    num_gpus: float = 0.0,
    bundles=None,
):
    """`n` rollout worker actors, each holding one engine, each reserving `cpus` CPUs.

    `threads`: torch threads of a worker (default: floor(cpus), at least 1); `vllm_bind`: pin a
    vLLM CPU engine's OpenMP threads to `threads` cores (rlkit.runtime.placement.threads);
    `num_gpus`: each worker's GPU share, worker i in bundle i of the placement group `bundles`
    when given (rlkit.runtime.placement.gpus)."""
    import ray

    from rlkit.runtime.actors.rollout_worker import RolloutWorker
    from rlkit.runtime.placement.gpus import in_bundle
    from rlkit.runtime.placement.threads import vllm_cpu_binding

    threads = max(1, int(cpus)) if threads is None else threads
    actor = ray.remote(num_cpus=cpus, runtime_env={"env_vars": actor_env()})(RolloutWorker)
    return [
        actor.options(num_gpus=num_gpus, **in_bundle(bundles, i)).remote(
            kind,
            model_path,
            engine_kw,
            threads,
            vllm_cpu_binding(threads, i) if vllm_bind and kind == "vllm" else None,
        )
        for i in range(n)
    ]


def reset_workers(workers: list, model_path: str) -> None:
    """Load the weights of `model_path` into running workers and set their version to 0."""
    import ray

    from rlkit.engines.model_io import load_folder_state, state_dict_to_bytes

    blob = ray.put(state_dict_to_bytes(load_folder_state(model_path)))
    ray.get([w.abort_all.remote() for w in workers])
    ray.get([w.load_weights.remote(blob, 0) for w in workers])
