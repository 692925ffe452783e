"""Attention-based credit (arXiv 2510.13554) on the real stack: vLLM rollouts, a two-rank
DeepSpeed ZeRO-2 trainer whose training forward is wrapped by the ``attention_credit`` token
hook. Each strategy, selected from the recipe, trains two steps and logs the hook's metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict
from tests.integration.conftest import tiny_recipe

pytestmark = pytest.mark.slow

# The session's tiny model (2 layers, 2 heads of 64): default layers [0, 1], 4 heads in all.
# Sequences are ~12 tokens, so the FAI band and WAAD window are scaled down from 10..100 / 10.
KNOBS = {"window": 4, "fai_lo": 2, "fai_hi": 8}


@pytest.mark.parametrize("strategy", ["preplan", "anchor", "coupled"])
def test_strategy_trains_end_to_end(tmp_path, tiny_model, vllm_worker, strategy):
    from rlkit.runtime.run import train

    recipe = tiny_recipe(
        tmp_path,
        name=f"attn_{strategy}",
        algo={
            "advantage": "grpo",
            "token_hook": "attention_credit",
            "token_hook_kw": {"strategy": strategy, **KNOBS},
        },
        trainer={"total_steps": 2},
        **{"async": {"alpha": 1}},
    )
    recipe["model"]["path"] = tiny_model
    run_dir = train(config_from_dict(recipe), workers=[vllm_worker], log=lambda *_: None)
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    # γ <= amp = 1.5; coupled: an anchor that is also an intro gets 1 + 0.5 + α·0.5 = 1.75
    top = 1.75 if strategy == "coupled" else 1.5
    for r in rows:
        assert math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])
        # some response tokens amplified, none shrunk
        assert 0.0 < r["attn_credit/frac_amplified"] <= 1.0
        assert 1.0 < r["attn_credit/mean_gamma"] <= top
        assert 1.0 < r["attn_credit/max_gamma"] <= top
        assert 0.0 <= r["attn_credit/preplan_anchor_jaccard"] <= 1.0
        assert r["attn_credit/signal_s"] > 0
    if strategy != "coupled":  # exactly the top 40% of each response (>= 1 token)
        assert rows[0]["attn_credit/max_gamma"] == pytest.approx(1.5)
