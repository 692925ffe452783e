"""Combine the per-function outputs of one sample into a :class:`RewardResult`.

total = Σ_k w_k · s_k, where s_k is function k's score, or the pool's ``fallback`` when the
function failed (raised, timed out, returned something invalid). Components keep the unweighted
s_k under the function's name and extra numeric dict entries under ``"<name>/<key>"``.
``token_scores`` are summed element-wise with the same weights; functions that returned none
are skipped, and sequences of different lengths are an error (the sample is marked failed and
the token scores dropped, the scalar score stays valid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlkit.rewards.types import RewardResult


@dataclass
class Part:
    """One function's contribution to one sample."""

    ok: bool
    output: dict[str, Any] | None = None
    error: str | None = None


def combine(
    names: list[str], weights: list[float], parts: list[Part], fallback: float
) -> RewardResult:
    """Weighted combination of ``parts`` (one per function, in recipe order)."""
    score = 0.0
    components: dict[str, float] = {}
    errors: list[str] = []
    token_scores: list[float] | None = None
    token_mismatch = False
    for name, weight, part in zip(names, weights, parts, strict=True):
        if not part.ok or part.output is None:
            errors.append(f"{name}: {_first_line(part.error)}")
            components[name] = fallback
            score += weight * fallback
            continue
        out = part.output
        components[name] = out["score"]
        score += weight * out["score"]
        for key, value in out["components"].items():
            components[f"{name}/{key}"] = value
        if out["token_scores"] is not None:
            token_scores, err = _add_tokens(token_scores, out["token_scores"], weight)
            if err:
                errors.append(f"{name}: {err}")
                token_mismatch = True
    if token_mismatch:
        token_scores = None
    return RewardResult(
        score=score,
        components=components,
        token_scores=token_scores,
        failed=bool(errors),
        error="; ".join(errors) if errors else None,
    )


def _add_tokens(
    acc: list[float] | None, new: list[float], weight: float
) -> tuple[list[float] | None, str | None]:
    scaled = [weight * v for v in new]
    if acc is None:
        return scaled, None
    if len(acc) != len(scaled):
        return acc, f"token_scores length {len(scaled)} differs from another reward's {len(acc)}"
    return [a + b for a, b in zip(acc, scaled, strict=True)], None


def _first_line(text: str | None) -> str:
    return (text or "unknown error").splitlines()[0][:300]
