"""`make demo`'s recipe end to end through the CLI (tiny model + SFT warm-start + GRPO on the
real vLLM / DeepSpeed / Ray stack): the reward visibly rises and the run directory is complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_quickstart_reward_rises(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        "-m",
        "rlkit.cli",
        "train",
        "recipes/quickstart.yaml",
        f"logging.runs_dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[rlkit] step 40/40" in proc.stdout  # progress on the console
    run = tmp_path / "quickstart"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rewards = [r["reward/mean"] for r in rows]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last - first >= 0.15, rewards
    assert all(r["staleness/max"] <= 1 for r in rows)
    ckpt = run / "checkpoints" / "step_40"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "tokenizer.json").is_file()
