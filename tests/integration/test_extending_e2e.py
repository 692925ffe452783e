"""docs/extending.md end to end: a user's estimator, policy loss, token hook, rollout strategy
and credit stage, all named by path in one recipe, train on the real stack (vLLM worker,
two-rank DeepSpeed group, Ray), each checked by what it computes; and the entropy bonus changes
the trained loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict
from tests.integration.conftest import tiny_recipe

pytestmark = pytest.mark.slow

EX = "docs/examples"
STRATEGY = f"{EX}/custom_strategy.py:GreedyFirst"
CAP = 0.9  # below 1, so the capped ratio shows that `loss_kw` reached the user's loss


def _rows(tmp_path, tiny_model, worker, name, **sections) -> list[dict]:
    from rlkit.runtime.run import train

    recipe = tiny_recipe(tmp_path, name=name, **sections)
    recipe["model"]["path"] = tiny_model
    run_dir = train(config_from_dict(recipe), workers=[worker], log=lambda *_: None)
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _record_finished(monkeypatch) -> list[tuple[int, list[int], int, list[int]]]:
    """Record every completion the (real) GreedyFirst strategy gets back, in arrival order:
    (group id, prompt ids, sample index, response ids).  The recipe loads the same class."""
    from rlkit.plugins import PluginLoadError, import_target
    from rlkit.runtime.controller.strategies import parse_request_id

    cls = import_target(STRATEGY, STRATEGY.rsplit(":", 1)[0], kind="test", error=PluginLoadError)
    cls = cls.GreedyFirst
    seen: list[tuple[int, list[int], int, list[int]]] = []
    real = cls.on_finished

    def on_finished(self, group, request_id, completion):
        j = parse_request_id(request_id)[1]
        seen.append((group.group_id, list(group.prompt.token_ids), j, list(completion.token_ids)))
        return real(self, group, request_id, completion)

    monkeypatch.setattr(cls, "on_finished", on_finished)
    return seen


def _first_complete_groups(seen, size: int, count: int) -> list[dict[int, tuple]]:
    """The first `count` groups whose `size` samples all came back.  The first weight update
    follows the first training step, which needs `count` complete groups: every token of these
    was sampled from the initial weights."""
    groups: dict[int, dict[int, tuple]] = {}
    done: list[int] = []
    for gid, prompt, j, response in seen:
        groups.setdefault(gid, {}).setdefault(j, (prompt, response))
        if len(groups[gid]) == size and gid not in done:
            done.append(gid)
    assert len(done) >= count, f"only {len(done)} complete groups came back"
    return [groups[g] for g in done[:count]]


def _is_greedy(model, prompt: list[int], response: list[int]) -> bool:
    """Every response token is the argmax of the model's next-token logits (ties within 1e-4,
    for vLLM vs HF float32 rounding)."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([prompt + response])).logits[0]
    steps = logits[len(prompt) - 1 : len(prompt) - 1 + len(response)]
    chosen = steps.gather(1, torch.tensor(response)[:, None])[:, 0]
    return bool(torch.all(chosen >= steps.max(1).values - 1e-4))


def test_user_plugins_by_path_train_end_to_end(tmp_path, tiny_model, vllm_worker, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    seen = _record_finished(monkeypatch)
    stage = f"{EX}/custom_stage.py:BrevityBonus"
    rows = _rows(
        tmp_path,
        tiny_model,
        vllm_worker,
        "plugins",
        algo={
            "advantage": f"{EX}/custom_algo.py:rank_advantage",
            "policy_loss": f"{EX}/custom_algo.py:clipped_reinforce",
            "loss_kw": {"cap": CAP},
            "token_hook": f"{EX}/custom_hook.py:LateTokenWeights",
            "token_hook_kw": {"slope": 2.0},
            "credit": [stage],
            "credit_kw": {stage: {"bonus": 0.2}},
        },
        rollout={"strategy": STRATEGY},
        trainer={"total_steps": 2, "lr_schedule": "linear", "warmup_steps": 1},
        **{"async": {"alpha": 1}},
    )
    assert len(rows) == 2
    for r in rows:
        assert r["algo/advantage"].endswith("custom_algo.py:rank_advantage")
        # the user's loss ran with its knob: the ratio (about 1 near on-policy) is capped at CAP
        assert 0.5 * CAP < r["reinforce/ratio_mean"] <= CAP + 1e-6
        # the user's hook ran with slope 2: w_t = 1 + 2t/T averages 2 − 1/T per response (T > 2
        # on average here), while the default slope 1 could not exceed 1.5
        assert 1.5 < r["hook/weight_mean"] < 3.0
        # the user's stage ran on this batch: mean of 0.2·(1 − n/n_max) over its responses
        want = 0.2 * (1 - r["response_length/mean"] / r["response_length/max"])
        assert r["brevity/bonus_mean"] == pytest.approx(want, abs=1e-6)
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0
    assert any(r["brevity/bonus_mean"] > 0 for r in rows)  # lengths varied: a real bonus
    # warmup 1 step then linear decay over 2 steps: lr rises to its peak, then falls
    assert rows[0]["lr"] == pytest.approx(1e-3) and rows[1]["lr"] < rows[0]["lr"]

    # the user's strategy ran: in every group sample 0 is the initial policy's greedy response,
    # the other samples (temperature 1) are not
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    first = _first_complete_groups(seen, size=4, count=4)
    assert all(_is_greedy(model, *g[0]) for g in first)
    sampled = [_is_greedy(model, *g[j]) for g in first for j in (1, 2, 3)]
    assert sum(sampled) < len(sampled) / 2, sampled


def test_entropy_coef_changes_the_trained_loss(tmp_path, tiny_model, vllm_worker):
    common = {"async": {"mode": "sync"}, "trainer": {"total_steps": 1}}
    plain = _rows(tmp_path, tiny_model, vllm_worker, "no_bonus", **common)[0]
    bonus = _rows(tmp_path, tiny_model, vllm_worker, "bonus", algo={"entropy_coef": 0.5}, **common)
    bonus = bonus[0]
    assert bonus["reward/mean"] == plain["reward/mean"]  # same samples (seeded, synchronous)
    # the entropy term is −H aggregated over the step's tokens (token-mean), H > 0
    assert bonus["term/entropy"] == pytest.approx(-bonus["entropy/mean"], rel=0.05)
    assert bonus["loss"] == pytest.approx(plain["loss"] + 0.5 * bonus["term/entropy"], abs=1e-5)
    assert bonus["loss"] < plain["loss"] - 0.1
