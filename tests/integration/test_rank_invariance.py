"""The loss and its gradient do not depend on how one step is split over micro-batches and
data-parallel ranks (real DeepSpeed ZeRO-2 groups of one and two ranks, gloo)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _step(model, samples, *, world, micro, agg):
    import ray

    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.cluster import actor_env
    from rlkit.runtime.trainer_group import TrainerGroup, merge_rank_metrics

    cfg = config_from_dict(
        {
            "model": {"kind": "tiny"},
            "rollout": {"prompts_per_step": len(samples), "samples_per_prompt": 1, "max_tokens": 6},
            "trainer": {"lr": 1e-3, "grad_clip": 1e9, "micro_batch_size": micro, "world_size": 1},
            "algo": {"agg": agg},
        }
    )
    group = TrainerGroup(model, cfg, world=world, rank_cpus=0.5, env=actor_env())
    try:
        return merge_rank_metrics(ray.get(group.train_step_async(samples)))
    finally:
        group.shutdown()


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_same_loss_and_grad_over_splits(ray_cluster, tiny_model, agg):
    import random

    from rlkit.engines.train_batch import TrainSample

    rng = random.Random(0)
    samples = []
    for i in range(8):  # ragged responses so that the normalisers matter
        n = rng.randint(1, 6)
        resp = [rng.randint(4, 60) for _ in range(n)]
        samples.append(
            TrainSample(
                [5 + i % 3, 6, 7], resp, [-3.0 - 0.1 * k for k in range(n)], rng.uniform(-1, 1)
            )
        )
    ref = _step(tiny_model, samples, world=1, micro=8, agg=agg)
    for world, micro in [(1, 3), (2, 4), (2, 1)]:
        got = _step(tiny_model, samples, world=world, micro=micro, agg=agg)
        assert got["loss"] == pytest.approx(ref["loss"], abs=1e-6), (world, micro)
        assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4), (world, micro)
    assert ref["grad_norm"] > 0
