"""A worked example of docs/extending.md: a loss term.

`algo.loss_terms: [{term: policy}, {term: docs/examples/custom_term.py:logprob_l2, weight: 0.01}]`
adds a penalty on the squared log-probabilities of the sampled tokens (it keeps the policy from
becoming over-confident), aggregated like every other term.
"""

from __future__ import annotations


def logprob_l2(ctx, *, scale: float = 1.0):
    value = scale * ctx.aggregate(ctx.logprobs**2)
    return value, {"l2/value": float(value.detach())}
