"""Ray set-up: an embedded local cluster on loopback (tests, laptops) or an existing one."""

from __future__ import annotations

import os

LOOPBACK_ENV = {
    # Every Ray socket binds 127.0.0.1 with this set (environment.md); nothing leaves the host.
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
    ):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def init_ray(address: str | None, num_cpus: float, object_store_mb: int) -> None:
    """Connect to `address`, or start an embedded cluster bound to loopback."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    os.environ.update(LOOPBACK_ENV)
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        object_store_memory=object_store_mb * 1024 * 1024,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": actor_env()},
    )


def start_rollout_workers(kind: str, model_path: str, n: int, cpus: float, engine_kw: dict):
    """`n` rollout worker actors, each holding one engine."""
    import ray

    from rlkit.runtime.rollout_worker import RolloutWorker

    actor = ray.remote(num_cpus=cpus, runtime_env={"env_vars": actor_env()})(RolloutWorker)
    return [actor.remote(kind, model_path, engine_kw, max(1, int(cpus))) for _ in range(n)]


def reset_workers(workers: list, model_path: str) -> None:
    """Load the weights of `model_path` into running workers and set their version to 0."""
    import ray

    from rlkit.engines.model_io import load_folder_state, state_dict_to_bytes

    blob = ray.put(state_dict_to_bytes(load_folder_state(model_path)))
    ray.get([w.abort_all.remote() for w in workers])
    ray.get([w.load_weights.remote(blob, 0) for w in workers])
