"""The shipped credit stages: reference log-probs, critic values, KL in the reward, advantages,
the critic update.  Each is one small job on a CreditBatch (see rlkit.credit.base)."""

from __future__ import annotations

from typing import Any

import torch

from rlkit.algos.advantages import accepted, compute_advantages
from rlkit.algos.declared import estimator, token_inputs
from rlkit.algos.gae import gae_returns
from rlkit.algos.kl import kl_token_penalties
from rlkit.algos.masked_ops import place_at_last_token
from rlkit.credit.base import CreditBatch, Services, register_credit_stage


@register_credit_stage("reference")
class ReferenceLogprobs:
    """log π_ref of every response token from the reference actor -> stream `ref_logprobs`."""

    def __init__(self, cfg: Any, **_: Any):
        pass

    def run(self, batch: CreditBatch, services: Services) -> None:
        refs = services.reference.logprobs(batch.samples)  # the trainer ranks' copies
        for s, lp in zip(batch.samples, refs):
            s.streams["ref_logprobs"] = lp


@register_credit_stage("critic_values")
class CriticValues:
    """V_m(s_t) of every critic for every response token -> `batch.values` [M, B, T]."""

    def __init__(self, cfg: Any, **_: Any):
        pass

    def run(self, batch: CreditBatch, services: Services) -> None:
        per_critic = services.critic.values(batch.samples)  # [critic][sample][token]
        batch.values = torch.stack([batch.padded(rows) for rows in per_critic])
        v = batch.values.mean(0)
        batch.stats["critic/value_mean"] = float(v[batch.mask].mean())
        if batch.values.shape[0] > 1:
            sigma = batch.values.std(0)
            batch.stats["critic/value_std_mean"] = float(sigma[batch.mask].mean())


@register_credit_stage("kl_in_reward")
class KLInReward:
    """β·k(log μ_t, log π_ref,t) per token, to be subtracted from the reward (the formula:
    rlkit.algos.kl.kl_token_penalties); the advantage stage applies it."""

    def __init__(self, cfg: Any, **_: Any):
        self.kind, self.beta = cfg.algo.kl_kind, cfg.algo.kl_beta

    def run(self, batch: CreditBatch, services: Services) -> None:
        pens = kl_token_penalties(batch.samples, self.kind, self.beta)
        batch.token_penalties = batch.padded(pens)
        batch.stats["kl/reward_penalty"] = sum(sum(p) for p in pens) / len(pens)


@register_credit_stage("advantage")
class Advantages:
    """The recipe's estimator (`algo.advantage`: a registered name or a path) -> stream
    `advantages`.  Outcome estimators see R − Σ_t β·k_t when the KL is in the reward;
    value estimators (they declare `needs_critic`) see token rewards R·1[last] − β·k_t and the
    mean critic value; an estimator that declares `token_inputs` (`token_level`) gets them,
    e.g. the rewards' `token_scores`."""

    def __init__(self, cfg: Any, **_: Any):
        self.name, self.kw = cfg.algo.advantage, dict(cfg.algo.advantage_kw)
        self.token_inputs = token_inputs(cfg)
        if cfg.critic.enabled:  # value estimators discount like the critics' returns
            critic_kw = {"gamma": cfg.critic.gamma, "lam": cfg.critic.lam}
            self.kw = {**accepted(estimator(cfg), critic_kw), **self.kw}

    def run(self, batch: CreditBatch, services: Services) -> None:
        rewards = batch.rewards
        if batch.values is not None:  # token-level estimator over critic values
            rewards = place_at_last_token(rewards, batch.mask)
            if batch.token_penalties is not None:
                rewards = rewards - batch.token_penalties
        elif batch.token_penalties is not None:
            rewards = rewards - batch.token_penalties.sum(1)
        kw = {**self.kw, **batch.estimator_kw}
        for key, source in self.token_inputs.items():
            kw[key] = batch.padded(TOKEN_INPUTS[source](batch))
        adv = compute_advantages(
            self.name,
            rewards=rewards,
            group_ids=batch.group_ids,
            mask=batch.mask,
            values=None if batch.values is None else batch.values.mean(0),
            **kw,
        )
        batch.set_stream("advantages", adv)
        batch.stats["advantage/mean"] = float(_valid(adv, batch.mask).mean())
        batch.stats["advantage/abs_mean"] = float(_valid(adv, batch.mask).abs().mean())


@register_credit_stage("critic_update")
class CriticUpdate:
    """GAE returns R_t = A_t + V̄_t (unwhitened) as value targets; starts every critic's step on
    its disjoint share of each group (rlkit.runtime.actors.critic_group) without waiting for it."""

    def __init__(self, cfg: Any, **_: Any):
        self.gamma, self.lam = cfg.critic.gamma, cfg.critic.lam

    def run(self, batch: CreditBatch, services: Services) -> None:
        rewards = place_at_last_token(batch.rewards, batch.mask)
        if batch.token_penalties is not None:
            rewards = rewards - batch.token_penalties
        v = batch.values.mean(0)
        _, ret = gae_returns(rewards, v, batch.mask, gamma=self.gamma, lam=self.lam)
        batch.stats["critic/return_mean"] = float(ret[batch.mask].mean())
        lengths = batch.lengths
        returns = [ret[i, :n].tolist() for i, n in enumerate(lengths)]
        old = [[v_m[i, :n].tolist() for i, n in enumerate(lengths)] for v_m in batch.values]
        sizes = [g.size for g in batch.groups]
        batch.extra_refs += services.critic.train_async(batch.samples, returns, old, sizes)


def token_scores(batch: CreditBatch) -> list[list[float]]:
    """Per-token process scores of every sample; a sample whose rewards gave none gets its
    outcome reward on every token."""
    out = []
    for (_, s), r, n in zip(batch.flat, batch.rewards.tolist(), batch.lengths):
        out.append(list(s.token_scores) if s.token_scores is not None else [r] * n)
    return out


# The per-token inputs an estimator may declare (`token_inputs`), by name.
TOKEN_INPUTS = {"token_scores": token_scores}


def _valid(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return adv[mask] if adv.dim() == 2 else adv
