"""The HF engine's attention: torch SDPA with grouped-query heads kept grouped, and beams that
share their prompt's keys and values instead of copying them (rlkit.engines.prefix_kv_scorer).

`GQA_SDPA` is registered with transformers as an attention implementation (and with its SDPA
masks). Two things differ from transformers' own "sdpa":

- Under a padding mask transformers repeats grouped keys and values once per query head
  (`repeat_kv`, 3x the cache traffic for SmolLM2's 9 query / 3 KV heads); here they go to
  `scaled_dot_product_attention(..., enable_gqa=True)` as they are (11x faster for one decoding
  step of 256 SmolLM2 rows; identical output).
- A forward may carry `rlkit_shared_prompt=SharedPrompt(...)`: the batch is U users x G beams
  decoding one token each; every beam attends over its user's prompt keys and values (one copy
  per user, left-padded, padding masked) followed by its own suffix (the cache this forward
  sees). Scores over both parts are softmaxed together:

      a = softmax([q·K_prompt(u), q·K_suffix(b)] / sqrt(d)),  out = a · [V_prompt(u); V_suffix(b)]

  which is exactly attention over the beam's whole prefix, without materialising G copies of
  the prompt per step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

GQA_SDPA = "rlkit_sdpa_gqa"  # the HF engine's attention implementation


@dataclass(frozen=True)
class SharedPrompt:
    """Per layer (keys, values) of U prompts, each (U, kv_heads, prompt width, dim); `keep`
    (U, width) marks real (not padding) positions; the batch is `users` x `beams` rows, user
    major."""

    layers: list[tuple[Any, Any]]
    keep: Any
    users: int
    beams: int


@functools.cache
def register_gqa_sdpa() -> str:
    """Register `GQA_SDPA` with transformers (attention and SDPA masks); returns the name for
    `attn_implementation`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GQA_SDPA, _attention)
    AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)
    return GQA_SDPA


def _attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    rlkit_shared_prompt: SharedPrompt | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention contract: query (B, heads, q, d), key/value (B, kv_heads, k, d)
    -> output (B, q, heads, d), no weights."""
    import torch

    if rlkit_shared_prompt is not None:
        return _shared_prompt_attention(module, query, key, value, scaling, rlkit_shared_prompt)
    if attention_mask is not None:
        attention_mask = attention_mask[:, :, :, : key.shape[-2]]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        is_causal=bool(query.shape[2] > 1 and attention_mask is None and causal),
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def _shared_prompt_attention(
    module: Any, query: Any, key: Any, value: Any, scaling: float | None, sp: SharedPrompt
) -> tuple[Any, None]:
    """One decoding token per row over [its user's prompt; its own suffix] (module doc)."""
    import torch

    rows, heads, q_len, dim = query.shape
    kv_heads, u, g = key.shape[1], sp.users, sp.beams
    if q_len != 1 or rows != u * g:
        raise ValueError(f"shared-prompt attention: {rows} rows x {q_len} tokens, want {u}x{g}x1")
    scale = scaling if scaling is not None else dim**-0.5
    q = query.reshape(u, g, kv_heads, heads // kv_heads, dim)  # query head h -> kv head h // grp
    kp, vp = sp.layers[module.layer_idx]
    ks = key.reshape(u, g, kv_heads, key.shape[2], dim)
    vs = value.reshape(u, g, kv_heads, key.shape[2], dim)
    on_prompt = torch.einsum("ugkqd,ukld->ugkql", q, kp) * scale
    on_prompt = on_prompt.masked_fill(~sp.keep[:, None, None, None, :], float("-inf"))
    on_suffix = torch.einsum("ugkqd,ugktd->ugkqt", q, ks) * scale
    weights = torch.cat([on_prompt, on_suffix], dim=-1).softmax(dim=-1)
    width = kp.shape[2]
    out = torch.einsum("ugkql,ukld->ugkqd", weights[..., :width], vp)
    out = out + torch.einsum("ugkqt,ugktd->ugkqd", weights[..., width:], vs)
    return out.reshape(rows, 1, heads, dim), None
