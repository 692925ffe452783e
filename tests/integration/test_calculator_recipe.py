"""`recipes/agents_calculator_cpu.yaml` end to end through the CLI as a user runs it (tiny model,
warm start with tool demonstrations, multi-turn GRPO with the calculator on vLLM / DeepSpeed /
Ray): the reward rises and the tool is called more often (docs/agents.md, "The calculator
recipe").  About 10 minutes on 2 CPU cores, most of it the warm start, so `make test` deselects
it (`recipe` marker); `make test-recipes` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.recipe


def test_calculator_recipe_reward_rises_with_tool_use(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "rlkit.cli", "train", "recipes/agents_calculator_cpu.yaml",
           f"logging.runs_dir={tmp_path}"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "demonstrations (mean reward 1.00)" in proc.stdout  # every shown trajectory solves
    rows = [
        json.loads(x)
        for x in (tmp_path / "agents_calculator_cpu" / "metrics.jsonl").read_text().splitlines()
    ]
    rewards = [r["reward/mean"] for r in rows]
    turns = [r["env/turns_mean"] for r in rows]
    assert sum(rewards[-5:]) / 5 - sum(rewards[:5]) / 5 >= 0.15, rewards  # measured: +0.19..+0.45
    assert sum(turns[-5:]) / 5 > sum(turns[:5]) / 5, turns  # the tool is called more often
    assert all(r["env/failures"] == 0 and r["env/timeouts"] == 0 for r in rows)
