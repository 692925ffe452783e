"""KL to the reference *in the reward* (the alternative to the KL loss term).

Token rewards become r_t = R·1[t = last] − β·k(log μ_t, log π_ref,t), with μ the rollout
engine's logprobs of the sampled tokens (the policy that produced them; verl uses the trainer's
recomputed old logprobs, equal on-policy up to numerics).  Outcome estimators (GRPO family) see
the sequence reward R − β·Σ_t k_t, as verl's `apply_kl_penalty` followed by a token sum; GAE sees
the token rewards.
"""

from __future__ import annotations


def kl_token_penalties(samples: list, kind: str, beta: float) -> list[list[float]]:
    """β·k_t for every response token of every sample (needs `ref_logprobs` filled in)."""
    import torch

    from rlkit.algos import kl_penalty

    out = []
    for s in samples:
        lp = torch.tensor([s.behavior_logprobs], dtype=torch.float64)
        ref = torch.tensor([s.ref_logprobs], dtype=torch.float64)
        out.append((beta * kl_penalty(kind, lp, ref))[0].tolist())
    return out


def apply_to_outcome_advantages(
    samples: list,
    rewards: list[float],
    group_ids: list[int],
    penalties: list[list[float]],
    advantage: str,
    advantage_kw: dict,
) -> float:
    """Recompute outcome advantages from R − Σ_t β·k_t; returns the mean penalty."""
    import torch

    from rlkit.algos import compute_advantages

    sums = [sum(p) for p in penalties]
    shaped = torch.tensor([r - p for r, p in zip(rewards, sums)], dtype=torch.float32)
    adv = compute_advantages(
        advantage, rewards=shaped, group_ids=torch.tensor(group_ids), **advantage_kw
    )
    for s, a in zip(samples, adv.tolist()):
        s.advantage = a
    return sum(sums) / len(sums)
