"""AsyPPO's credit stages through the real pipeline with a fake critic service: the stage order
a recipe gets, the masks as per-token streams of every sample, the metrics, the critic section's
γ/λ reaching the estimator, and a clear error without critics."""

from __future__ import annotations

import pytest
import torch

from rlkit.algos import compute_advantages, place_at_last_token
from rlkit.config.loader import config_from_dict
from rlkit.credit import Services, build_pipeline
from rlkit.credit.pipeline import stage_names
from rlkit.engines.rollout_protocol import Completion
from rlkit.methods.asyppo import asyppo_masks
from rlkit.runtime.controller.groups import Group, Prompt, Sample


class FakeCritics:
    """[critic][sample][token] values from a seeded generator; records the update calls."""

    def __init__(self, num_critics: int):
        self.m, self.updates = num_critics, []
        self.gen = torch.Generator().manual_seed(0)

    def values(self, samples):
        n = [len(s.response_ids) for s in samples]
        return [[torch.randn(k, generator=self.gen).tolist() for k in n] for _ in range(self.m)]

    def train_async(self, samples, returns, old_values, group_sizes):
        self.updates.append((len(samples), group_sizes, len(old_values)))
        return []


def _cfg(**algo):
    return config_from_dict(
        {
            "model": {"kind": "tiny"},
            "rollout": {"prompts_per_step": 3, "samples_per_prompt": 4},
            "algo": {"advantage": "asyppo", "entropy_coef": 1e-3, **algo},
            "critic": {"enabled": True, "lam": 0.5},
        }
    )


def _groups(lengths=((5, 3, 8, 6), (2, 7, 4, 4), (9, 1, 3, 5))):
    groups = []
    for gid, lens in enumerate(lengths):
        g = Group(gid, Prompt(gid, "p", [5, 6, 7], {}), len(lens), 0, 0)
        for j, n in enumerate(lens):
            g.samples[j] = Sample(j, Completion([9] * n, [0.0] * n), 0, reward=float(j % 2))
        groups.append(g)
    return groups


def test_recipe_gets_the_stages_in_order():
    assert stage_names(_cfg()) == [
        "critic_values",
        "advantage",
        "asyppo_masks",
        "critic_update",
    ]
    # the same masks on plain `gae` by naming the stage
    named = _cfg(advantage="gae", credit=["asyppo_masks"])
    assert stage_names(named) == ["critic_values", "advantage", "asyppo_masks", "critic_update"]


def test_masks_become_streams_and_metrics():
    critics = FakeCritics(2)
    batch = build_pipeline(_cfg(), Services(critic=critics))(_groups())
    assert batch.values.shape == (2, 12, 9)
    _, adv, ent = asyppo_masks(batch.values, batch.mask)
    for i, s in enumerate(batch.samples):
        n = len(s.response_ids)
        assert s.streams["adv_mask"] == adv[i, :n].float().tolist()
        assert s.streams["entropy_mask"] == ent[i, :n].float().tolist()
    st = batch.stats
    assert st["asyppo/adv_masked_frac"] == pytest.approx(0.2, abs=0.05)
    assert st["asyppo/ent_masked_frac"] == pytest.approx(0.2, abs=0.05)
    assert st["asyppo/sigma_p10"] < st["asyppo/sigma_p50"] < st["asyppo/sigma_p90"]
    assert {"asyppo/value_mean", "asyppo/value_std", "critic/value_mean"} <= set(st)
    assert critics.updates == [(12, [4, 4, 4], 2)]  # every critic's update started


def test_knobs_and_the_critic_discount_reach_the_computation():
    cfg = _cfg(credit_kw={"asyppo_masks": {"adv_low_frac": 0.5, "ent_high_frac": 0.0}})
    batch = build_pipeline(cfg, Services(critic=FakeCritics(2)))(_groups())
    assert batch.stats["asyppo/adv_masked_frac"] == pytest.approx(0.5, abs=0.05)
    assert batch.stats["asyppo/ent_masked_frac"] == pytest.approx(0.0, abs=0.03)
    rewards = place_at_last_token(batch.rewards, batch.mask)
    kw = dict(rewards=rewards, mask=batch.mask, values=batch.values.mean(0), gamma=1.0)
    want = compute_advantages("gae", lam=0.5, **kw)  # critic.lam = 0.5
    other = compute_advantages("gae", lam=0.95, **kw)
    got = batch.padded([s.streams["advantages"] for s in batch.samples])
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, other, atol=1e-3)


def test_stage_refuses_a_recipe_without_critics():
    from rlkit.credit import CREDIT_STAGES

    cfg = config_from_dict({"model": {"kind": "tiny"}, "algo": {"credit": ["asyppo_masks"]}})
    with pytest.raises(ValueError, match="critic.enabled"):
        CREDIT_STAGES["asyppo_masks"](cfg)
