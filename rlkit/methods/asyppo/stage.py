"""AsyPPO's credit stages (arXiv 2510.01656; docs/asyppo.md).

`asyppo_masks` runs after the advantage stage (GAE on the mean critic value V̄): from the
critics' values [M, B, T] it sets the per-token streams `adv_mask` (the policy term multiplies
the advantages by it) and `entropy_mask` (the entropy bonus only counts those tokens), and logs
the masked fractions, σ percentiles and the mean value's mean/std.

Percentiles are taken over all valid response tokens of the training step.  The paper takes them
per mini-batch; with `trainer.mini_batches: 1` (the default) the step is the mini-batch and the
two coincide; with several mini-batches the step-wide thresholds are applied to every one.

GAE discounts with the `critic` section's γ and λ, as for `gae` (the advantage stage hands them
to any estimator when critics are on; an `algo.advantage_kw` value wins).
"""

from __future__ import annotations

from typing import Any

from rlkit.credit.base import CreditBatch, Services, register_credit_stage
from rlkit.methods.asyppo.advantage import asyppo_masks, asyppo_metrics


@register_credit_stage("asyppo_masks")
class AsyPPOMasks:
    """σ_t = std over critics -> streams `adv_mask`, `entropy_mask`; metrics `asyppo/*`.

    Knobs (`algo.credit_kw.asyppo_masks`): `adv_low_frac` (0.2), `ent_high_frac` (0.2)."""

    after_advantage = True

    def __init__(self, cfg: Any, *, adv_low_frac: float = 0.2, ent_high_frac: float = 0.2):
        if not cfg.critic.enabled:
            raise ValueError("asyppo_masks needs critic values: set critic.enabled: true")
        self.adv_low_frac, self.ent_high_frac = adv_low_frac, ent_high_frac

    def run(self, batch: CreditBatch, services: Services) -> None:
        if batch.values is None:
            raise ValueError("asyppo_masks runs after `critic_values`; batch.values is empty")
        sigma, adv_mask, ent_mask = asyppo_masks(
            batch.values,
            batch.mask,
            adv_low_frac=self.adv_low_frac,
            ent_high_frac=self.ent_high_frac,
        )
        batch.set_stream("adv_mask", adv_mask.float())
        batch.set_stream("entropy_mask", ent_mask.float())
        batch.stats.update(asyppo_metrics(batch.values, sigma, adv_mask, ent_mask, batch.mask))
