"""GRPO-VPS on the real stack: engine beliefs (prompt-logprob requests of the vLLM rollout worker)
equal the HF packed and naive beliefs; probe jobs leave in-flight sampling requests untouched; a
short `grpo_vps` run from a recipe dict logs the VPS metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict, load_recipe
from tests.integration.conftest import tiny_recipe

pytestmark = pytest.mark.slow

SUFFIX = "\nThe final answer is \\boxed{"
REPO = Path(__file__).resolve().parents[2]


def _fresh(worker, tiny_model):
    """Earlier tests may have trained the shared worker: back to the tiny model's weights."""
    from rlkit.runtime.placement.cluster import reset_workers

    reset_workers([worker], tiny_model)


def test_engine_beliefs_equal_packed_and_naive(vllm_worker, tiny_model):
    import ray
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlkit.methods.vps import answer_beliefs, belief_from_logprobs, build_probes

    _fresh(vllm_worker, tiny_model)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt, suffix, answer = enc("12+7="), enc(SUFFIX), enc("19")
    response = enc("12+7 is 10+2+7\n\n= 10+9\n\n= 19 done")
    bounds = [0, 15, 23, len(response)]
    probes = build_probes(prompt, response, bounds, suffix, answer)
    starts = [len(p) - len(answer) for p in probes]
    lps = ray.get(vllm_worker.score.remote(probes, starts))
    engine = [belief_from_logprobs(lp) for lp in lps]
    assert all(len(lp) == len(answer) for lp in lps)
    for method in ("packed", "naive"):
        hf = answer_beliefs(model, prompt, response, bounds, suffix, answer, method=method)
        assert engine == pytest.approx(hf, abs=1e-4)
    assert len(set(round(p, 8) for p in engine)) > 1  # the beliefs differ per boundary


def _requests(tok_eos: int, tag: str, n: int = 3):
    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.runtime.actors.rollout_worker import SampleRequest

    cfg = lambda i: SamplingConfig(max_tokens=24, seed=100 + i, ignore_eos=True)  # noqa: E731
    prompts = [[40 + i, 41, 42, 43] for i in range(n)]
    return [SampleRequest(f"{tag}:{i}", p, cfg(i)) for i, p in enumerate(prompts)]


def _drain(worker, first: list) -> dict[str, list[int]]:
    import ray

    done = {f.request_id: f.completion.token_ids for f in first}
    for _ in range(500):
        if ray.get(worker.num_unfinished.remote()) == 0 and done:
            break
        done.update(
            {f.request_id: f.completion.token_ids for f in ray.get(worker.run.remote([], [], 0.05))}
        )
    done.update(
        {f.request_id: f.completion.token_ids for f in ray.get(worker.run.remote([], [], 0.0))}
    )
    return {k.split(":", 1)[1]: v for k, v in done.items()}


def test_probe_jobs_leave_in_flight_sampling_untouched(vllm_worker, tiny_model):
    import ray

    _fresh(vllm_worker, tiny_model)
    alone = _drain(vllm_worker, ray.get(vllm_worker.run.remote(_requests(0, "alone"), [], 0.0)))
    first = ray.get(vllm_worker.run.remote(_requests(0, "mixed"), [], 0.0))
    assert ray.get(vllm_worker.num_unfinished.remote()) == 3  # still sampling
    probes = [[40, 41, 42, 43, 50 + k, 60, 61, 62] for k in range(6)]
    lps = ray.get(vllm_worker.score.remote(probes, [5] * 6))
    assert [len(x) for x in lps] == [3] * 6
    mixed = _drain(vllm_worker, first)
    assert sorted(mixed) == sorted(alone) == ["0", "1", "2"]
    assert mixed == alone and all(len(v) == 24 for v in mixed.values())


def test_grpo_vps_run_logs_vps_metrics(tmp_path, tiny_model, vllm_worker):
    from rlkit.runtime.run import train

    recipe = tiny_recipe(
        tmp_path,
        name="vps",
        algo={"advantage": "grpo_vps", "credit_kw": {"vps_probes": {"min_tokens": 2}}},
        rollout={"max_tokens": 12},
        trainer={"total_steps": 2},
    )
    recipe["model"]["path"] = tiny_model
    run_dir = train(config_from_dict(recipe), workers=[vllm_worker], log=lambda *_: None)
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for r in rows:
        assert r["algo/advantage"] == "grpo_vps"
        assert r["vps/with_beliefs_frac"] >= 0.5  # rows carry `answer` (empty responses: none)
        assert r["vps/segments_per_response"] >= 1 and r["vps/probe_tokens"] > 0
        for key in ("belief_first", "belief_last", "belief_mean", "progress_std", "probe_time_s"):
            assert math.isfinite(r[f"vps/{key}"])
        assert 0 < r["vps/belief_first"] < 1
        assert 0 <= r["vps/credit_pos_frac"] + r["vps/credit_neg_frac"] <= 1
        assert math.isfinite(r["loss"]) and r["time/credit_vps_probes_s"] > 0


@pytest.mark.parametrize("name", ["vps_cpu.yaml", "vps_gpu_cluster.yaml"])
def test_vps_recipes_load(name):
    cfg = load_recipe(REPO / "recipes" / name)
    assert cfg.algo.advantage == "grpo_vps"
    assert cfg.algo.credit_kw["vps_probes"]["method"] == "engine"
