"""KL to the reference *in the reward* (the alternative to the KL loss term).

Token rewards become r_t = R·1[t = last] − β·k(log μ_t, log π_ref,t), with μ the rollout
engine's logprobs of the sampled tokens (the policy that produced them; verl uses the trainer's
recomputed old logprobs, equal on-policy up to numerics).  Outcome estimators (GRPO family) see
the sequence reward R − β·Σ_t k_t, as verl's `apply_kl_penalty` followed by a token sum; GAE sees
the token rewards (rlkit.credit.stages: `kl_in_reward`, then `advantage`).
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
