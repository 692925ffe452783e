"""Data types of the reward system: what a recipe names, and what a scored sample gives back.

A reward function returns either a number or a dict. The dict form must carry ``score`` and may
carry other numeric components (logged as metrics) and ``token_scores`` (per-token or per-segment
process rewards). :func:`normalize_output` turns both forms into one plain-Python shape so that
outputs cross process boundaries cheaply and the pool combines them in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RewardSpec:
    """One reward function of a recipe.

    Attributes:
        fn: ``"package.module:function"``, ``"path/to/file.py:function"`` or a short name
            registered with ``@reward("name")``.
        weight: multiplier of this function's score in the total.
        name: metric / component name; defaults to the registered name or the function's name.
        kwargs: extra keyword arguments passed on every call (knobs set in the recipe); they
            override dataset fields of the same name.
    """

    fn: str
    weight: float = 1.0
    name: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, value: RewardSpec | str | dict[str, Any]) -> RewardSpec:
        """Accept a spec, a bare string, or a recipe dict ``{fn:, weight:, name:, kwargs:}``."""
        if isinstance(value, RewardSpec):
            return value
        if isinstance(value, str):
            return cls(fn=value)
        if isinstance(value, dict):
            unknown = set(value) - {"fn", "weight", "name", "kwargs"}
            if unknown or "fn" not in value:
                raise ValueError(
                    f"reward spec {value!r}: expected keys fn (required), weight, name, kwargs"
                )
            return cls(
                fn=str(value["fn"]),
                weight=float(value.get("weight", 1.0)),
                name=value.get("name"),
                kwargs=dict(value.get("kwargs") or {}),
            )
        raise TypeError(f"cannot make a RewardSpec from {type(value).__name__}: {value!r}")


@dataclass
class RewardResult:
    """The combined reward of one sample.

    Attributes:
        score: weighted sum over the recipe's functions (a failed function contributes the
            pool's ``fallback`` times its weight).
        components: unweighted score of each function by name, plus extra numeric entries of
            dict returns as ``"<name>/<key>"``.
        token_scores: weighted element-wise sum of the ``token_scores`` that functions returned,
            or None when none did.
        failed: True when any function raised, timed out or returned something invalid.
        error: short description of the failure(s), None when ``failed`` is False.
    """

    score: float
    components: dict[str, float] = field(default_factory=dict)
    token_scores: list[float] | None = None
    failed: bool = False
    error: str | None = None


class RewardOutputError(ValueError):
    """A reward function returned something that is not a reward."""


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, bool):
        return float(value)
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise RewardOutputError(f"{what} must be a number, got {type(value).__name__}") from exc
    if not math.isfinite(out):
        raise RewardOutputError(f"{what} is not finite: {out}")
    return out


def normalize_output(raw: Any) -> dict[str, Any]:
    """Turn a reward function's return value into ``{score, components, token_scores}``.

    Accepted: a number (bool, int, float, numpy scalar, 0-d tensor), or a dict holding
    ``score`` plus optional numeric components and an optional ``token_scores`` sequence.
    Raises :class:`RewardOutputError` for anything else (missing score, NaN, non-numeric).
    """
    if not isinstance(raw, dict):
        return {"score": _as_float(raw, "reward"), "components": {}, "token_scores": None}
    if "score" not in raw:
        raise RewardOutputError(f"dict reward has no 'score' key (keys: {sorted(raw)})")
    components: dict[str, float] = {}
    token_scores = None
    for key, value in raw.items():
        if key == "score":
            continue
        if key == "token_scores":
            if value is not None:
                token_scores = [_as_float(v, "token_scores entry") for v in value]
            continue
        components[str(key)] = _as_float(value, f"component {key!r}")
    return {
        "score": _as_float(raw["score"], "score"),
        "components": components,
        "token_scores": token_scores,
    }
