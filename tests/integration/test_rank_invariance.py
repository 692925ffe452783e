"""The loss and its gradient do not depend on how one step is split over micro-batches and
data-parallel ranks (real DeepSpeed ZeRO-2 groups of one and two ranks, gloo), micro-batches
formed by sample count or by a padded-token budget (`trainer.micro_batch_tokens`), with one
or two mini-batches (optimizer steps) per step, padded or packed (`trainer.packing`: one
padding-free row per micro-batch, the budget counting real tokens)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _step(model, samples, *, world, micro, agg, tokens=0, minis=1, packing=False):
    import ray

    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.actors.trainer_group import TrainerGroup, merge_rank_metrics
    from rlkit.runtime.placement.cluster import actor_env

    cfg = config_from_dict(
        {
            "model": {"kind": "tiny"},
            "rollout": {"prompts_per_step": len(samples), "samples_per_prompt": 1, "max_tokens": 6},
            "trainer": {
                "lr": 1e-3,
                "grad_clip": 1e9,
                "micro_batch_size": micro,
                "micro_batch_tokens": tokens,
                "mini_batches": minis,
                "world_size": 1,
                "packing": packing,
            },
            "algo": {"agg": agg},
        }
    )
    group = TrainerGroup(model, cfg, world=world, rank_cpus=0.5, env=actor_env())
    try:
        return merge_rank_metrics(ray.get(group.train_step_async(samples)))
    finally:
        group.shutdown()


def len_row(s) -> int:
    return len(s.prompt_ids) + len(s.response_ids)


def _samples():
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
    return samples


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_same_loss_and_grad_over_splits(ray_cluster, tiny_model, agg):
    samples = _samples()
    ref = _step(tiny_model, samples, world=1, micro=8, agg=agg)
    # (world, micro, token budget, packing): budgets of 12 and 20 padded tokens give ragged
    # layouts; packed, a budget of 20 real tokens splits the 8 rows (4..9 tokens) into several
    cases = [(1, 3, 0, False), (2, 4, 0, False), (2, 1, 0, False), (1, 8, 20, False)]
    cases += [(2, 8, 12, False), (1, 8, 0, True), (2, 8, 20, True)]
    for world, micro, tokens, packing in cases:
        got = _step(
            tiny_model, samples, world=world, micro=micro, agg=agg, tokens=tokens, packing=packing
        )
        case = (world, micro, tokens, packing)
        assert got["loss"] == pytest.approx(ref["loss"], abs=1e-6), case
        rel = 1e-5 if packing else 1e-4
        assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=rel), case
        if packing:  # one padding-free row per micro-batch: the forward ran the real tokens only
            assert got["train/forward_tokens"] == sum(map(len_row, samples)), case
        if tokens:  # the budget really split the step into more micro-batches than the count
            assert got["train/micro_batches"] > len(samples) / world / micro, case
    assert ref["grad_norm"] > 0
    assert ref["train/forward_tokens"] == 8 * max(map(len_row, samples))  # padded
    assert ref["train/forward_tokens"] > sum(map(len_row, samples))


def test_token_budget_two_mini_batches_equal_sample_count(ray_cluster, tiny_model):
    """Two optimizer steps per training step: ragged token-budget micro-batches (different
    counts per mini-batch, equalised over two ranks) give the same losses and grad norm."""
    samples = _samples()
    ref = _step(tiny_model, samples, world=2, micro=2, agg="token-mean", minis=2)
    # mini-batch k is the batch's k-th chunk whatever the world size: one rank, same updates
    one = _step(tiny_model, samples, world=1, micro=4, agg="token-mean", minis=2)
    assert one["loss"] == pytest.approx(ref["loss"], abs=1e-6)
    assert one["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4)
    got = _step(tiny_model, samples, world=2, micro=2, agg="token-mean", tokens=10, minis=2)
    assert got["loss"] == pytest.approx(ref["loss"], abs=1e-6)
    assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4)
    # packed, with π_old recomputed through the packed forward (two updates per step)
    got = _step(tiny_model, samples, world=2, micro=4, agg="token-mean", minis=2, packing=True)
    assert got["loss"] == pytest.approx(ref["loss"], abs=1e-6)
    assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-5)
    assert ref["grad_norm"] > 0
