"""Reward models on the real stack (docs/rewards.md, "Model rewards"): a vLLM judge's verdict
probability equals a plain transformers forward; a SIGKILLed reward-model actor is restarted
and the call that hit it still gets the model's score; recipes/judge_cpu.yaml trains and its
judge / classifier scores and counters land in metrics.jsonl."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest

from rlkit.config.schema import RewardModelConfig, TinyModelConfig

TINY = TinyModelConfig(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512, seed=1)
ITEMS = [
    {"prompt": "3+4=", "response": "\\boxed{7}", "answer": "7"},
    {"prompt": "12+9=", "response": "20", "answer": "21"},
    {"prompt": "1+1=", "response": "\\boxed{2} yes", "answer": "2"},
]
TEMPLATE = "Q: {prompt}\nA: {response}\nGold: {answer}\nCorrect (Y/N)? "


def _transformers_verdict(folder: str, item: dict) -> float:
    """P(Y) / (P(Y) + P(N)) from one plain transformers forward of the rendered prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    text = TEMPLATE.replace("{prompt}", item["prompt"]).replace("{response}", item["response"])
    text = text.replace("{answer}", item["answer"])
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
    y, n = (tok(t, add_special_tokens=False)["input_ids"][0] for t in ("Y", "N"))
    return math.exp(logp[y]) / (math.exp(logp[y]) + math.exp(logp[n]))


@pytest.fixture(scope="module")
def recipe_models(ray_cluster, tmp_path_factory):
    """The reward models of recipes/judge_cpu.yaml (a vLLM judge, a classifier), started once:
    the verdict test and the recipe's run share them (a vLLM engine start is ~40 s)."""
    from rlkit.config.loader import load_recipe
    from rlkit.runtime.reward_models import start_reward_models

    cfg = load_recipe("recipes/judge_cpu.yaml")
    folder = tmp_path_factory.mktemp("rm")
    models = start_reward_models(cfg.reward.models, folder, cfg.seed)
    assert cfg.reward.models[0].template == TEMPLATE  # what the transformers check renders
    models.wait_ready()
    yield models, folder
    models.close()


def test_vllm_judge_verdict_equals_a_transformers_forward(recipe_models):
    models, folder = recipe_models
    models.metrics()  # reset
    got = models.handles["judge"].score([(i["prompt"], i["response"], i["answer"])
                                         for i in ITEMS])  # fmt: skip
    metrics = models.metrics()
    want = [_transformers_verdict(str(folder / "reward_models" / "judge"), it) for it in ITEMS]
    assert got == pytest.approx(want, abs=1e-4)
    assert len(set(got)) == 3  # the three prompts differ; not a constant
    assert metrics["reward_model/judge/batches"] == 1.0  # one model call for the three items


def test_killed_reward_model_actor_is_restarted_and_the_call_answered(ray_cluster, tmp_path):
    from rlkit.runtime.reward_models import start_reward_models

    cfg = RewardModelConfig(name="rm", kind="classifier", tiny=TINY, placement="colocated",
                            cache_size=0, max_model_len=256)  # fmt: skip
    models = start_reward_models([cfg], tmp_path, log=lambda m: None)
    try:
        models.wait_ready()
        gateway = models.gateways["rm"]
        handle = models.handles["rm"]
        before = handle.score(["abc", ("1+1=", "2")])
        pid = gateway.backend.wait_ready()
        os.kill(pid, signal.SIGKILL)
        after = handle.score(["abc", ("1+1=", "2")])  # hits the dead actor: restart, resend
        metrics = models.metrics()
        new_pid = gateway.backend.wait_ready()
    finally:
        models.close()
    assert after == pytest.approx(before, abs=1e-5)
    assert new_pid != pid
    assert metrics["reward_model/rm/restarts"] == 1.0
    assert metrics["reward_model/rm/fallbacks"] == 0.0


def test_judge_recipe_trains_and_records_model_metrics(tmp_path, vllm_worker, recipe_models):
    from rlkit.config.loader import load_recipe
    from rlkit.runtime.run import start_rewards, train

    cfg = load_recipe(
        "recipes/judge_cpu.yaml",
        ["sft.steps=0", "trainer.total_steps=2", f"logging.runs_dir={tmp_path}",
         "logging.tensorboard=false"],
    )  # fmt: skip
    models, _ = recipe_models
    models.metrics()  # reset: the run's records count its own calls
    pool = start_rewards(cfg, models)  # the recipe's pool, on the shared models
    try:
        run_dir = train(cfg, workers=[vllm_worker], reward_pool=pool, log=lambda m: None)
    finally:
        pool.close()
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 2
    items = sum(r["reward_model/judge/items"] for r in recs)
    assert items > 0 and sum(r["reward_model/rm/items"] for r in recs) > 0
    assert all(r["reward_model/judge/fallbacks"] == 0 for r in recs)
    assert all(0.0 < r["reward/judge_verdict"] < 1.0 for r in recs)
    assert any(r["reward_model/judge/batch_size"] > 1 for r in recs)  # calls shared batches
    for key in ("timeouts", "parse_failures", "latency_s", "restarts"):
        assert f"reward_model/judge/{key}" in recs[0]
    assert "reward/rm_score" in recs[0]
