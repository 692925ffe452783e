"""Building and running a recipe's credit pipeline.

Default order (each stage only when the recipe needs it):
    reference -> critic_values -> kl_in_reward -> [estimator's own stages, algo.credit]
    -> advantage -> [stages marked `after_advantage`] -> critic_update
An estimator declares the stages it needs with a `credit_stages` attribute (GRPO-VPS: its
probes; rlkit.algos.declared); `algo.credit` adds stages by registered name or
`path/to/file.py:Class`, with knobs from `algo.credit_kw[<name>]`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from rlkit.algos.declared import estimator
from rlkit.credit.base import CREDIT_STAGES, CreditBatch, Services
from rlkit.engines.train_batch import TrainSample


def stage_names(cfg: Any) -> list[str]:
    """The ordered stage names of a recipe (see module docstring)."""
    a = cfg.algo
    own = list(getattr(estimator(cfg), "credit_stages", ()))
    extra = [n for n in [*own, *a.credit] if n not in ("reference", "advantage")]
    before = [n for n in extra if not getattr(CREDIT_STAGES[n], "after_advantage", False)]
    after = [n for n in extra if n not in before]
    names = ["reference"] if a.kl_beta > 0 else []
    names += ["critic_values"] if cfg.critic.enabled else []
    names += ["kl_in_reward"] if a.kl_in_reward and a.kl_beta > 0 else []
    names += [*before, "advantage", *after]
    names += ["critic_update"] if cfg.critic.enabled else []
    return names


class CreditPipeline:
    """Finished groups -> (training samples with streams, stats, refs to wait for)."""

    def __init__(self, cfg: Any, services: Services):
        self.services = services
        self.names = stage_names(cfg)
        knobs = cfg.algo.credit_kw
        self.stages = [CREDIT_STAGES[n](cfg, **knobs.get(n, {})) for n in self.names]

    def __call__(self, groups: list) -> CreditBatch:
        batch = new_batch(groups)
        for name, stage in zip(self.names, self.stages):
            t0 = time.perf_counter()
            stage.run(batch, self.services)
            batch.stats[f"time/credit_{name.rsplit(':', 1)[-1]}_s"] = time.perf_counter() - t0
        return batch


def build_pipeline(cfg: Any, services: Services) -> CreditPipeline:
    return CreditPipeline(cfg, services)


def new_batch(groups: list) -> CreditBatch:
    """Samples of complete groups in group-id order, with the batch's reward statistics.

    The batch mask is each sample's trained mask (its completion's `loss_mask`: environment
    tokens 0) over its response, False past its end: every stage that reads `batch.mask` leaves
    environment tokens out."""
    groups = sorted(groups, key=lambda g: g.group_id)
    flat = [(g, g.samples[j]) for g in groups for j in range(g.size)]
    samples = [
        TrainSample(
            g.prompt.token_ids,
            s.completion.token_ids,
            s.completion.logprobs,
            loss_mask=s.completion.loss_mask,
        )
        for g, s in flat
    ]
    lengths = [len(s.response_ids) for s in samples]
    width = max(lengths)
    mask = torch.zeros((len(samples), width), dtype=torch.bool)
    for i, s in enumerate(samples):
        mask[i, : lengths[i]] = torch.tensor(s.trained_mask(), dtype=torch.bool)
    rewards = torch.tensor([s.reward for _, s in flat], dtype=torch.float32)
    gids = torch.tensor([g.group_id for g, _ in flat])
    batch = CreditBatch(groups, samples, rewards, gids, mask)
    batch.stats.update(reward_stats(flat, rewards, lengths))
    return batch


def reward_stats(flat: list, rewards: torch.Tensor, lengths: list[int]) -> dict[str, float]:
    n = len(flat)
    stats = {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()) if n > 1 else 0.0,
        "response_length/mean": sum(lengths) / n,
        "response_length/max": float(max(lengths)),
        "response/truncated_frac": sum(s.completion.finish_reason == "length" for _, s in flat) / n,
        "reward/failed_frac": sum(s.reward_failed for _, s in flat) / n,
    }
    for key in {k for _, s in flat for k in s.components}:
        vals = [s.components[key] for _, s in flat if key in s.components]
        stats[f"reward/{key}"] = sum(vals) / len(vals)
    return stats
