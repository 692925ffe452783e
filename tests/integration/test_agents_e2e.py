"""A multi-turn run on the real stack (Ray loopback, a vLLM rollout worker, DeepSpeed ranks):
the environment named by path, its metrics in metrics.jsonl, and the trained samples' loss
masks 0 on the environment's tokens (docs/agents.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict
from tests.integration.conftest import tiny_recipe

pytestmark = pytest.mark.slow

ENV = "docs/examples/guess_number.py:GuessNumber"


def test_multi_turn_run_masks_environment_tokens(tmp_path, tiny_model, vllm_worker):
    from rlkit.runtime.run import train

    recipe = tiny_recipe(
        tmp_path,
        name="agents",
        rollout={
            "prompts_per_step": 2,
            "samples_per_prompt": 2,
            "max_tokens": 8,
            "strategy": "multi_turn",
            "strategy_kw": {"max_turns": 3, "env_timeout_s": 10},
            "env": ENV,
            "env_kw": {"low": 0, "high": 9},
            "dump": True,
        },
        trainer={"total_steps": 2, "micro_batch_size": 2},
        reward={"fns": [{"fn": "env_reward"}]},
        **{"async": {"mode": "async", "alpha": 1}},
    )
    recipe["model"]["path"] = tiny_model
    run_dir = Path(train(config_from_dict(recipe), workers=[vllm_worker], log=lambda *_: None))
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    env_tokens = sum(r["env/env_tokens"] for r in rows)
    assert sum(r["env/trajectories"] for r in rows) >= 4 and env_tokens > 0
    assert max(r["env/turns_mean"] for r in rows) > 1  # the random model rarely guesses right
    assert all(r["env/failures"] == 0 and r["env/timeouts"] == 0 for r in rows)
    assert all(r["rollout/accounting_ok"] == 1.0 for r in rows)

    trained = [
        json.loads(x)
        for f in sorted((run_dir / "rollouts").glob("step_*.jsonl"))
        for x in f.read_text().splitlines()
    ]
    assert len(trained) == 2 * 2 * 2  # steps x prompts x samples
    multi = [t for t in trained if t["turns"] > 1]
    assert multi, "no trained sample had an environment turn"
    for t in trained:
        mask, start = t["loss_mask"], t["prompt_len"]
        assert len(mask) == len(t["token_ids"]) and not any(mask[:start])
        assert mask[start] == 1  # the response opens with the model's first turn
    for t in multi:  # an environment turn sits between model turns, masked
        response = t["loss_mask"][t["prompt_len"] :]
        first_env = response.index(0)
        assert 1 in response[first_env:]
        assert all(lp == 0.0 for lp, m in zip(t["logprobs"], t["loss_mask"]) if m == 0)
