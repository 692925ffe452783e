"""The reference model inside the trainer ranks (rlkit.runtime.placement.reference): a ZeRO-3
group of two ranks scores a step's samples, an uneven share per rank, and gets exactly what
one whole-batch forward of the initial model gives; the policy still trains."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _samples(n: int):
    import random

    from rlkit.engines.train_batch import TrainSample

    rng = random.Random(1)
    out = []
    for i in range(n):
        resp = [rng.randint(4, 60) for _ in range(rng.randint(1, 6))]
        out.append(TrainSample([5 + i % 3, 6, 7], resp, [-3.0] * len(resp), rng.uniform(-1, 1)))
    return out


def test_zero3_ranks_hold_the_reference_and_score_their_shares(ray_cluster, tiny_model):
    import ray
    import torch

    from rlkit.config.loader import config_from_dict
    from rlkit.engines.logprobs import micro_batch_forward
    from rlkit.engines.micro_batches import build
    from rlkit.engines.reference import ReferencePolicy
    from rlkit.engines.train_batch import response_values
    from rlkit.runtime.actors.trainer_group import TrainerGroup, merge_rank_metrics
    from rlkit.runtime.placement.cluster import actor_env
    from rlkit.runtime.placement.reference import reference_plan

    cfg = config_from_dict(
        {
            "model": {"kind": "tiny"},
            "rollout": {"prompts_per_step": 4, "samples_per_prompt": 2, "max_tokens": 6},
            "trainer": {"world_size": 2, "zero_stage": 3, "micro_batch_size": 2},
            "algo": {"kl_beta": 0.1},
        }
    )
    plan = reference_plan(cfg, 0.0)
    assert plan is not None and plan.micro_batch == 2
    group = TrainerGroup(tiny_model, cfg, world=2, rank_cpus=0.5, env=actor_env(), reference=plan)
    try:
        group.wait_ready()
        samples = _samples(7)  # 4 + 3: the ranks' shares differ
        got = group.reference.logprobs(samples)
        local = ReferencePolicy(tiny_model, device="cpu", dtype="float32", micro_batch=7,
                                packing=False)  # fmt: skip
        with torch.no_grad():
            logp, _, _ = micro_batch_forward(local.model, build(samples, local.pad_id, False))
        for a, b in zip(got, response_values(logp, samples), strict=True):
            assert a == pytest.approx(b, abs=1e-5)
        step = _samples(8)  # the KL term of the loss reads the reference's stream
        for s, lp in zip(step, group.reference.logprobs(step)):
            s.streams["ref_logprobs"] = lp
        metrics = merge_rank_metrics(ray.get(group.train_step_async(step)))
        assert metrics["grad_norm"] > 0
    finally:
        group.shutdown()
