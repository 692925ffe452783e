"""Session fixtures for the integration tests: one Ray cluster on loopback, one tiny model, one
vLLM rollout worker (engine start-up is ~40 s, so every test shares it)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from rlkit.runtime.placement.cluster import init_ray

    # Logical CPUs: one rollout worker (1) + a two-rank trainer group (2 x 0.5) + spare.
    init_ray(None, num_cpus=4, object_store_mb=600)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from rlkit.data.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0))


@pytest.fixture(scope="session")
def vllm_worker(ray_cluster, tiny_model):
    import ray

    from rlkit.runtime.placement.cluster import start_rollout_workers

    (worker,) = start_rollout_workers(
        "vllm", tiny_model, 1, 1.0, {"max_model_len": 256, "kv_cache_gib": 1, "seed": 0}
    )
    ray.get(worker.version.remote())
    yield worker
    ray.kill(worker)


def tiny_recipe(tmp_path, **sections) -> dict:
    """A small recipe dict for end-to-end tests (merged with `sections`)."""
    base = {
        "name": "e2e",
        "model": {"kind": "path"},
        "data": {"kind": "arithmetic", "num_prompts": 64, "max_operand": 9},
        "rollout": {
            "engine": "vllm",
            "prompts_per_step": 4,
            "samples_per_prompt": 4,
            "max_tokens": 8,
            "temperature": 1.0,
        },
        "trainer": {
            "world_size": 2,
            "zero_stage": 2,
            "lr": 1e-3,
            "micro_batch_size": 4,
            "total_steps": 3,
        },
        "reward": {
            "fns": [{"fn": "tests/integration/reward_fixture.py:digit_fraction"}],
            "mode": "thread",
            "num_workers": 2,
        },
        "logging": {"runs_dir": str(tmp_path / "runs"), "tensorboard": True},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base
