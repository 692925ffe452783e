"""Answer beliefs for GRPO-VPS: the policy's probability of the gold answer after each segment.

For boundaries [b_0 = 0, b_1, ..., b_K] the probe k is x_k = q ⊕ o[:b_k] ⊕ s ⊕ a* (prompt,
response prefix, answer suffix such as "\\nThe final answer is \\\\boxed{", gold answer tokens), and

    p_k = exp( (1/L) Σ_j log π(a*_j | x_k without a*, a*_<j) )      (length-normalised, no grad)

(docs/algorithms.md §3; the paper's exact probe is not public). Two ways to compute it with an HF
causal LM:

- ``naive``: one forward per probe (K+1 forwards, each re-reading the shared prefix).
- ``packed``: one forward over q ⊕ o ⊕ (s ⊕ a*)_0 ⊕ ... ⊕ (s ⊕ a*)_K, with a 4-D additive
  attention mask [1, 1, N, N] (0 = allowed, finfo(dtype).min = blocked) letting probe k's tokens
  see only q ⊕ o[:b_k] and its own earlier tokens, and position ids continuing from |q| + b_k.
  transformers (>= 4.5x, checked on 5.x) passes a 4-D mask to the eager and sdpa kernels as is;
  flash-attention kernels cannot take it, so ``packed`` refuses them.

A third way (rollout-engine prompt logprobs with prefix caching) uses :func:`build_probes` and
:func:`belief_from_logprobs` and lives in :mod:`rlkit.methods.vps.stage` (``engine_beliefs``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rlkit.algos.registry import check_choice

BELIEF_METHODS = ("naive", "packed")
PACKED_ATTN = ("eager", "sdpa")


def build_probes(
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    boundaries: Sequence[int],
    suffix_ids: Sequence[int],
    answer_ids: Sequence[int],
) -> list[list[int]]:
    """Token ids of each probe q ⊕ o[:b] ⊕ s ⊕ a*, one per boundary b (the last |a*| are scored)."""
    _check_args(prompt_ids, response_ids, boundaries, suffix_ids, answer_ids)
    tail = [*suffix_ids, *answer_ids]
    return [[*prompt_ids, *response_ids[:b], *tail] for b in boundaries]


def belief_from_logprobs(answer_logprobs: Sequence[float]) -> float:
    """p = exp(mean_j log π(a*_j | ...)) from the answer tokens' logprobs (e.g. prompt_logprobs)."""
    if len(answer_logprobs) == 0:
        raise ValueError("no answer logprobs")
    return math.exp(sum(answer_logprobs) / len(answer_logprobs))


def _check_args(prompt_ids, response_ids, boundaries, suffix_ids, answer_ids) -> None:
    if len(answer_ids) == 0:
        raise ValueError("answer_ids is empty: there is nothing to score")
    if any(not 0 <= b <= len(response_ids) for b in boundaries):
        raise ValueError(f"boundaries {list(boundaries)} outside 0..{len(response_ids)}")
    if len(prompt_ids) + len(suffix_ids) == 0 and 0 in boundaries:
        raise ValueError("the probe at b=0 has no context before the answer (empty prompt+suffix)")


def _device_dtype(model: Any) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters())
    return param.device, getattr(model, "dtype", param.dtype)


def _logits(model: Any, ids: Tensor, keep: int | Tensor, **kw: Any) -> Tensor:
    """Logits [n_keep, V] (float32) of the rows ``keep`` (last ``keep`` rows if an int)."""
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        out = model(input_ids=ids, logits_to_keep=keep, use_cache=False, **kw).logits[0]
    else:
        full = model(input_ids=ids, use_cache=False, **kw).logits[0]
        out = full[-keep:] if isinstance(keep, int) else full[keep]
    return out.float()


def _mean_logprob(logits: Tensor, targets: Tensor) -> float:
    """mean_j log softmax(logits_j)[targets_j] for logits [L, V] predicting targets [L]."""
    logp = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return float(logp.mean())


def _naive(model: Any, probes: list[list[int]], answer: Tensor) -> list[float]:
    """One forward per probe; the rows predicting the answer are the L before the last token."""
    device, _ = _device_dtype(model)
    n_ans = answer.numel()
    out = []
    for ids in probes:
        x = torch.tensor([ids], device=device)
        logits = _logits(model, x, n_ans + 1)[:-1]
        out.append(_mean_logprob(logits, answer))
    return out


def packed_layout(
    n_prompt: int, n_response: int, boundaries: Sequence[int], n_probe: int, n_answer: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Layout of the packed sequence q ⊕ o ⊕ probe_0 ⊕ ... (each probe = suffix ⊕ answer).

    Returns ``allowed`` (bool [N, N], row = query, column = key), ``position_ids`` ([N]) and
    ``score_rows`` ([K+1, n_answer]: the row whose logits predict answer token j of probe k;
    for j = 0 with an empty suffix that is the last context token q ⊕ o[:b_k]).
    """
    base = n_prompt + n_response
    n = base + len(boundaries) * n_probe
    allowed = torch.zeros(n, n, dtype=torch.bool)
    allowed[:base, :base] = torch.ones(base, base, dtype=torch.bool).tril()
    own = torch.ones(n_probe, n_probe, dtype=torch.bool).tril()
    positions = [torch.arange(base)]
    rows = []
    n_suffix = n_probe - n_answer
    for k, b in enumerate(boundaries):
        s = base + k * n_probe
        allowed[s : s + n_probe, : n_prompt + b] = True
        allowed[s : s + n_probe, s : s + n_probe] = own
        positions.append(n_prompt + b + torch.arange(n_probe))
        before = [s + n_suffix + j - 1 for j in range(n_answer)]
        if n_suffix == 0:
            before[0] = n_prompt + b - 1
        rows.append(before)
    return allowed, torch.cat(positions), torch.tensor(rows, dtype=torch.long)


def _packed(model: Any, prompt, response, boundaries, tail: list[int], answer: Tensor) -> list:
    """One forward over the packed sequence with a 4-D additive mask (see module docstring)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if impl is not None and impl not in PACKED_ATTN:
        raise ValueError(
            f"method='packed' needs attn_implementation in {PACKED_ATTN} (a 4-D mask), got "
            f"{impl!r}; use method='naive' or load the model with attn_implementation='sdpa'"
        )
    device, dtype = _device_dtype(model)
    n_ans = answer.numel()
    allowed, pos, rows = packed_layout(len(prompt), len(response), boundaries, len(tail), n_ans)
    ids = [*prompt, *response, *(tail * len(boundaries))]
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    logits = _logits(
        model,
        torch.tensor([ids], device=device),
        rows.reshape(-1).to(device),
        attention_mask=mask[None, None].to(device),
        position_ids=pos[None].to(device),
    )
    logits = logits.view(len(boundaries), n_ans, -1)
    return [_mean_logprob(lg, answer) for lg in logits]


def answer_beliefs(
    model: Any,
    prompt_ids: list[int],
    response_ids: list[int],
    boundaries: list[int],
    suffix_ids: list[int],
    answer_ids: list[int],
    method: str = "packed",
) -> list[float]:
    """Beliefs [p(b) for b in boundaries], p = exp(mean log π(a* | q ⊕ o[:b] ⊕ s, a*_<j)).

    ``model`` is an HF causal LM (the policy that produced the sample); the caller passes
    boundaries [0, b_1, ..., b_K] and leaves out any closing "}" of the answer. Runs under
    ``torch.no_grad()`` in eval mode (the model's mode is restored). ``method``: "naive" (one
    forward per probe) or "packed" (one forward with a 4-D attention mask; eager/sdpa only).
    Both agree to float rounding.
    """
    check_choice("belief method", method, BELIEF_METHODS)
    if not boundaries:
        return []
    probes = build_probes(prompt_ids, response_ids, boundaries, suffix_ids, answer_ids)
    device, _ = _device_dtype(model)
    answer = torch.tensor(list(answer_ids), device=device)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with torch.no_grad():
            if method == "naive":
                logps = _naive(model, probes, answer)
            else:
                tail = [*suffix_ids, *answer_ids]
                logps = _packed(model, prompt_ids, response_ids, boundaries, tail, answer)
    finally:
        model.train(was_training)
    return [math.exp(lp) for lp in logps]
