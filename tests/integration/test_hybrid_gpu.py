"""The GPU hybrid engine (placement colocated on GPUs, rlkit.runtime.placement.hybrid): a vLLM
engine in sleep mode gives its GPU memory back, and a synchronous run with one trainer rank and one
rollout worker on the same GPU (half a GPU each, one placement-group bundle) trains, switching
the GPU between them every step.  Needs one CUDA GPU; skipped (with this reason) on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM sleep mode needs a CUDA GPU"),
]


def test_vllm_sleep_releases_and_wake_restores_gpu_memory(tmp_path):
    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.engines.vllm_engine import VLLMEngine

    path = str(build_tiny_model(tmp_path / "m", seed=0))
    engine = VLLMEngine(path, gpu_memory_utilization=0.3, sleep_mode=True)
    sampling = SamplingConfig(max_tokens=8, temperature=0.0, seed=0)
    before = engine.generate([[5, 6, 7]], sampling)[0][0]
    free_awake, _ = torch.cuda.mem_get_info()
    engine.sleep()
    free_asleep, total = torch.cuda.mem_get_info()
    assert free_asleep - free_awake > 0.1 * total  # the KV cache (30 % of the GPU) is gone
    engine.wake_up()
    assert engine.generate([[5, 6, 7]], sampling)[0][0].token_ids == before.token_ids


def test_sync_run_shares_one_gpu_between_trainer_and_worker(tmp_path):
    import ray

    from rlkit.config.loader import config_from_dict
    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.runtime.placement.cluster import init_ray
    from rlkit.runtime.run import train
    from tests.integration.conftest import tiny_recipe

    recipe = tiny_recipe(
        tmp_path,
        name="hybrid",
        model={"kind": "path", "path": str(build_tiny_model(tmp_path / "m", seed=0))},
        trainer={"world_size": 1, "total_steps": 2, "lr": 1e-3, "micro_batch_size": 4},
        rollout={"num_workers": 1, "prompts_per_step": 4, "samples_per_prompt": 4, "max_tokens": 8},
        **{"async": {"mode": "sync"}},
    )
    init_ray(None, num_cpus=4, object_store_mb=600)  # detects the GPU
    try:
        run_dir = train(config_from_dict(recipe), log=lambda *_: None)
    finally:
        ray.shutdown()
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["grad_norm"] > 0 for r in rows)
    assert rows[-1]["policy_version"] == 2  # weights published into the woken worker
