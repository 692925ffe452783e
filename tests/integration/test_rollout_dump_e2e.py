"""`rollout.dump` on the real stack (vLLM worker, DeepSpeed rank, Ray), with two-turn samples
whose middle tokens an "environment" wrote: every trained sample is in
`rollouts/step_N.jsonl` with its tokens as trained, its loss mask, turns, version and reward, the
environment tokens get no advantage, and the rewards are the ones the metrics report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict
from tests.integration.conftest import tiny_recipe
from tests.integration.two_turn_strategy import ENV

pytestmark = pytest.mark.slow


def test_rollout_dump_of_masked_two_turn_samples(tmp_path, tiny_model, vllm_worker):
    from rlkit.runtime.run import train

    recipe = tiny_recipe(
        tmp_path,
        name="dump",
        rollout={
            "dump": True,
            "strategy": "tests/integration/two_turn_strategy.py:TwoTurns",
            "max_tokens": 4,
        },
        trainer={"total_steps": 2, "world_size": 1, "packing": True},
    )
    recipe["model"]["path"] = tiny_model
    run = Path(train(config_from_dict(recipe), workers=[vllm_worker], log=lambda *_: None))
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in (run / "rollouts").iterdir()) == ["step_1.jsonl", "step_2.jsonl"]
    for rec in metrics:
        step = rec["step"]
        lines = (run / "rollouts" / f"step_{step}.jsonl").read_text().splitlines()
        rows = [json.loads(x) for x in lines]
        assert len(rows) == 4 * 4  # prompts_per_step x samples_per_prompt
        for r in rows:
            n, p = len(r["token_ids"]), r["prompt_len"]
            assert len(r["loss_mask"]) == len(r["advantages"]) == len(r["logprobs"]) == n
            mask = r["loss_mask"]
            assert mask[:p] == [0] * p and r["turns"] == 2
            env_at = [t for t in range(p, n) if mask[t] == 0]
            assert [r["token_ids"][t] for t in env_at] == ENV  # exactly the environment's
            assert 2 <= sum(mask) == n - p - len(ENV)
            assert all(r["advantages"][t] == 0 for t in env_at)
            assert all(r["logprobs"][t] == 0 for t in env_at)
            assert all(r["logprobs"][t] <= 0 for t in range(p, n) if mask[t])
            assert 0 <= r["version"] <= step - 1
        mean = sum(r["reward"] for r in rows) / len(rows)
        assert mean == pytest.approx(rec["reward/mean"], abs=1e-6)
        assert {r["group_id"] for r in rows} and len(
            {(r["group_id"], r["sample"]) for r in rows}
        ) == 16
    assert any(any(r["advantages"]) for r in rows)  # something was trained on
    assert not list((run / "rollouts").glob(".*"))  # no temporary file left
    # the request timeline: each model turn of each trained sample, stamped by the worker
    timeline = [json.loads(x) for x in (run / "timeline.jsonl").read_text().splitlines()]
    reqs = [r for r in timeline if r["kind"] == "request"]
    assert len(reqs) >= 2 * 2 * 16 and all(r["worker"] == 0 for r in reqs)  # two turns each
    assert all(r["start"] <= r["end"] and r["version"] in (0, 1) for r in reqs)
    trains = [r for r in timeline if r["kind"] == "train"]
    assert [r["step"] for r in trains] == [1, 2]
    assert [r["step"] for r in timeline if r["kind"] == "publish"] == [1, 2]
    first_v1 = min(r["start"] for r in reqs if r["version"] == 1)
    assert first_v1 >= trains[0]["end"]  # version 1 requests start after step 1 trained
