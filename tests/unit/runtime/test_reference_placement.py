"""Where the reference model runs (rlkit.runtime.placement.reference), for every shipped GPU
recipe: inside the trainer ranks, on their GPU share, in the recipe's dtype, in the trainer's
micro-batches; on CPU on the trainer rank's threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit.config.loader import load_recipe
from rlkit.runtime.placement.gpus import gpu_shares
from rlkit.runtime.placement.reference import reference_plan
from rlkit.runtime.placement.threads import trainer_threads

ROOT = Path(__file__).resolve().parents[3]
GPU_RECIPES = sorted((ROOT / "recipes").glob("*gpu*.yaml"))


def test_there_are_gpu_recipes_to_check():
    assert len(GPU_RECIPES) >= 4


@pytest.mark.parametrize("path", GPU_RECIPES, ids=lambda p: p.stem)
def test_every_gpu_recipe_puts_the_reference_on_the_trainer_ranks_gpus(path):
    cfg = load_recipe(path)
    gpus = 8.0
    plan = reference_plan(cfg, gpus)
    if cfg.algo.kl_beta <= 0:
        assert plan is None  # no KL: no reference model at all
    # the decision with KL on, whatever the recipe says (every recipe's layout is checked)
    kl = load_recipe(path, ["algo.kl_beta=0.001"])
    plan = reference_plan(kl, gpus)
    t = kl.trainer
    per_mini = kl.samples_per_step // t.world_size // t.mini_batches
    assert plan.device == "cuda"
    assert plan.gpu_share == gpu_shares(kl, gpus).rank > 0  # the rank's own share, no extra GPU
    assert plan.dtype == kl.model.dtype == "bfloat16"
    assert plan.micro_batch == min(t.micro_batch_size, per_mini) < kl.samples_per_step
    assert plan.packing == t.packing
    assert plan.threads == 0


def test_rere_amazon_reference_shares_the_hybrid_engines_half_gpu():
    """The recipe of the issue: sync on GPUs = the hybrid engine, half a GPU per rank."""
    cfg = load_recipe(ROOT / "recipes" / "rere_amazon_gpu_cluster.yaml")
    assert cfg.algo.kl_beta > 0
    plan = reference_plan(cfg, 5.0)
    assert (plan.device, plan.gpu_share, plan.dtype) == ("cuda", 0.5, "bfloat16")
    assert plan.micro_batch == cfg.trainer.micro_batch_size == 16  # not the 512 samples at once


def test_on_cpu_the_reference_uses_the_trainer_ranks_threads():
    from rlkit.config.loader import config_from_dict

    for placement, threads in (("colocated", 4), ("disaggregated", 1)):
        cfg = config_from_dict(
            {
                "model": {"kind": "tiny"},
                "algo": {"kl_beta": 0.1},
                "placement": placement,
                "ray": {"num_cpus": 8},
                "trainer": {"world_size": 2, "rank_cpus": 1},
            }
        )
        plan = reference_plan(cfg, 0.0)
        assert (plan.device, plan.gpu_share, plan.dtype) == ("cpu", 0.0, "float32")
        assert plan.threads == trainer_threads(cfg, 2) == threads
