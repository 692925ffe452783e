"""GPU requests per actor (rlkit.runtime.placement.gpus): nothing on CPU clusters, a whole GPU
per actor disaggregated, half a GPU per trainer rank and rollout worker colocated (the hybrid
engine), and one clear error for each layout the hybrid engine cannot run."""

from __future__ import annotations

import pytest

from rlkit.config.loader import config_from_dict
from rlkit.runtime.placement.gpus import GpuShares, gpu_shares


def _cfg(**tree):
    base = {
        "model": {"kind": "tiny"},
        "rollout": {"num_workers": 2},
        "trainer": {"world_size": 2, "weight_sync": "object_store"},
    }
    return config_from_dict({**base, **tree})


def test_cpu_cluster_requests_no_gpu():
    assert gpu_shares(_cfg(), 0) == GpuShares()


def test_async_runs_every_actor_on_its_own_gpu():
    cfg = _cfg(**{"async": {"mode": "async"}})
    assert gpu_shares(cfg, 8) == GpuShares(worker=1.0, rank=1.0, critic=0.0, hybrid=False)
    with_critic = _cfg(
        **{"async": {"mode": "async"}}, critic={"enabled": True}, algo={"advantage": "gae"}
    )
    assert gpu_shares(with_critic, 8).critic == 1.0


def test_sync_is_the_hybrid_engine_half_a_gpu_each():
    cfg = _cfg(**{"async": {"mode": "sync"}})
    assert gpu_shares(cfg, 2) == GpuShares(worker=0.5, rank=0.5, critic=0.0, hybrid=True)
    forced = _cfg(**{"async": {"mode": "sync"}}, placement="disaggregated")
    assert not gpu_shares(forced, 4).hybrid


@pytest.mark.parametrize(
    "tree, message",
    [
        ({"async": {"mode": "async"}, "placement": "colocated"}, "needs async.mode: sync"),
        (
            {"async": {"mode": "sync"}, "rollout": {"num_workers": 1}},
            r"rollout.num_workers \(1\) must equal trainer.world_size \(2\)",
        ),
        (
            {"async": {"mode": "sync"}, "trainer": {"world_size": 2, "weight_sync": "nccl"}},
            "needs trainer.weight_sync: object_store",
        ),
        (
            {
                "async": {"mode": "async"},
                "critic": {"enabled": True, "placement": "colocated"},
                "algo": {"advantage": "gae"},
            },
            "use critic.placement: separate",
        ),
    ],
)
def test_layouts_the_hybrid_engine_cannot_run_get_one_clear_error(tree, message):
    with pytest.raises(ValueError, match=message):
        gpu_shares(_cfg(**tree), 4)


@pytest.mark.parametrize(
    "name", ["asyppo", "attention_credit", "rere_amazon", "vps"], ids=lambda n: n
)
def test_gpu_recipes_colocate_sync_and_separate_async(name):
    """The shipped GPU recipes: the synchronous one runs the hybrid engine, the asynchronous
    ones give every actor its own GPU (issue 13: colocated for sync, disaggregated for async)."""
    from pathlib import Path

    from rlkit.config.loader import load_recipe

    root = Path(__file__).resolve().parents[3]
    cfg = load_recipe(root / "recipes" / f"{name}_gpu_cluster.yaml")
    shares = gpu_shares(cfg, 8)
    assert shares.hybrid == (cfg.async_.mode == "sync")
    gpus = cfg.trainer.world_size * shares.rank + cfg.rollout.num_workers * shares.worker
    gpus += cfg.critic.world_size * shares.critic
    # hybrid: trainer rank i and worker i fill GPU i; otherwise one whole GPU per actor
    assert gpus == (cfg.trainer.world_size if shares.hybrid else int(gpus)) and gpus >= 2
