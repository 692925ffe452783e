"""AsyPPO on the real stack: vLLM rollouts, a two-rank DeepSpeed trainer, and two mini-critics
(tiny Qwen2 backbones smaller than the actor, sharing its tokenizer) colocated with the trainer.
Two steps; the masks' metrics, each critic's loss, explained variance and disjoint shard, and σ
percentiles are logged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict
from tests.integration.conftest import tiny_recipe

pytestmark = pytest.mark.slow


def _params(folder: Path) -> int:
    cfg = json.loads((folder / "config.json").read_text())
    h, layers, ffn = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    return cfg["vocab_size"] * h + layers * (4 * h * h + 3 * h * ffn)


def test_asyppo_two_mini_critics(tmp_path, tiny_model, vllm_worker):
    from rlkit.runtime.run import train

    recipe = tiny_recipe(
        tmp_path,
        name="asyppo",
        algo={"advantage": "asyppo", "entropy_coef": 1e-3},
        critic={
            "enabled": True,  # num_critics: auto = 2 for asyppo
            "tiny": {"hidden_size": 64, "num_layers": 1, "num_heads": 1, "intermediate_size": 128},
            "head_init_std": 0.1,
            "placement": "colocated",
            "lr": 1e-3,
            "micro_batch_size": 4,
        },
        trainer={"total_steps": 2},
    )
    recipe["model"]["path"] = tiny_model
    run_dir = Path(train(config_from_dict(recipe), workers=[vllm_worker], log=lambda *_: None))
    critic_dir = run_dir / "critic_model"
    assert _params(critic_dir) < _params(Path(tiny_model)) / 2  # mini-critics
    assert (
        json.loads((critic_dir / "config.json").read_text())["vocab_size"]
        == json.loads((Path(tiny_model) / "config.json").read_text())["vocab_size"]
    )  # the actor's tokenizer
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for r in rows:
        assert r["algo/advantage"] == "asyppo"
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0
        assert r["asyppo/adv_masked_frac"] == pytest.approx(0.2, abs=0.1)
        assert r["asyppo/ent_masked_frac"] == pytest.approx(0.2, abs=0.1)
        assert 0 < r["asyppo/sigma_p10"] < r["asyppo/sigma_p50"] < r["asyppo/sigma_p90"]
        assert math.isfinite(r["asyppo/value_mean"]) and r["asyppo/value_std"] > 0
        for m in (0, 1):  # each critic: its own half of every group, its own loss
            assert math.isfinite(r[f"critic{m}/loss"]) and r[f"critic{m}/loss"] >= 0
            assert math.isfinite(r[f"critic{m}/explained_var"])
            assert r[f"critic{m}/samples"] == 8
        assert r["critic/shared_samples"] == 0
        assert "entropy/mean" in r
