"""Weight sync trainer -> rollout worker: after a real DeepSpeed update, the vLLM worker's greedy
output equals transformers' greedy output on the trainer's (saved) weights.  The checkpoint's
trainer state resumes exactly (ZeRO-2, ZeRO-3, LoRA): a fresh group that loads it makes the same
next update as the group that saved it (optimizer moments included)."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.slow


def _group(tiny_model, zero_stage, lora=False):
    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.actors.trainer_group import TrainerGroup
    from rlkit.runtime.placement.cluster import actor_env

    cfg = config_from_dict(
        {
            "model": {"kind": "tiny", "lora": {"enabled": lora, "r": 4, "alpha": 8}},
            "rollout": {"prompts_per_step": 4, "samples_per_prompt": 1, "max_tokens": 8},
            "trainer": {
                "lr": 5e-2,
                "zero_stage": zero_stage,
                "micro_batch_size": 2,
                "world_size": 2,
            },
        }
    )
    return TrainerGroup(tiny_model, cfg, world=2, rank_cpus=0.5, env=actor_env())


@pytest.mark.parametrize(
    "zero_stage, lora", [(2, False), (3, False), (2, True)], ids=["zero2", "zero3", "zero2-lora"]
)
def test_synced_worker_matches_transformers(tmp_path, tiny_model, vllm_worker, zero_stage, lora):
    import ray
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.engines.train_batch import TrainSample
    from rlkit.runtime.checkpoints import start_checkpoint
    from rlkit.runtime.placement.cluster import reset_workers

    tok = AutoTokenizer.from_pretrained(tiny_model)
    prompt = tok("3+4=", add_special_tokens=False)["input_ids"]
    greedy = SamplingConfig(temperature=0.0, max_tokens=8)
    before = ray.get(vllm_worker.generate.remote([prompt], greedy))[0][0].token_ids
    # identical rows: the gradient is (sum of advantages) x one row's, so they must not cancel
    # (with a zero sum only float noise, amplified by Adam, would move the weights)
    advantages = (1.0, -0.5, 0.75, -0.25)
    samples = [TrainSample(prompt, before[:4], [-1.0] * 4, adv) for adv in advantages]
    group = _group(tiny_model, zero_stage, lora)
    try:
        ray.get(group.train_step_async(samples))
        # ZeRO-3 through a shared-memory file (the one-host route), the others as bytes
        weights = group.export_weights_async(to_file=zero_stage == 3)
        ray.get(vllm_worker.load_weights.remote(weights, 1))
        ckpt = start_checkpoint(tmp_path / "checkpoints", 1, group).wait()
        ray.get(group.train_step_async(samples))
        second = ray.get(group.export_weights_async())
    finally:
        group.shutdown()
    if zero_stage == 3:
        path = ray.get(weights)
        assert isinstance(path, str) and path.endswith(".safetensors")
        assert not os.path.exists(path), "the rank removes its weights file when it stops"
    assert_resumes_to(second, ckpt, samples, tiny_model, zero_stage, lora)
    assert ray.get(vllm_worker.version.remote()) == 1
    after = ray.get(vllm_worker.generate.remote([prompt], greedy))[0][0].token_ids
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    changed = any(not torch.equal(p, q) for p, q in zip(model.parameters(), base.parameters()))
    assert changed, "the update must change the weights"
    out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=8)
    hf = out[0, len(prompt) :].tolist()
    eos = tok.eos_token_id
    trim = lambda ids: ids[: ids.index(eos) + 1] if eos in ids else ids  # noqa: E731
    assert trim(after) == trim(hf)
    reset_workers([vllm_worker], tiny_model)
    assert ray.get(vllm_worker.version.remote()) == 0


def assert_resumes_to(expected: bytes, ckpt, samples, tiny_model, zero_stage, lora) -> None:
    """A new group from the initial model + the checkpoint's trainer state, one step on the
    same samples: the same weights as the uninterrupted group's second step."""
    import ray
    from safetensors.torch import load

    group = _group(tiny_model, zero_stage, lora)
    try:
        group.wait_ready()
        group.load_state(str(ckpt))
        ray.get(group.train_step_async(samples))
        got = load(ray.get(group.export_weights_async()))
    finally:
        group.shutdown()
    want = load(expected)
    assert sorted(got) == sorted(want)
    worst = max(float((got[k] - want[k]).abs().max()) for k in want)
    assert worst < 1e-6, worst
