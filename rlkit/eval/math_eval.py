"""Math evaluation: generate (or take given predictions), grade in the main thread, score.

One code path for both sources: samples are dicts {id, sample, greedy, completion, num_tokens,
finish_reason}; `grade_samples` adds `pred` (the extracted answer) and `correct`, and
`math_metrics` turns them into pass@1 / avg@n / pass@k / length / truncation numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlkit.eval.generation import EvalSettings, encode_prompts, run_batched
from rlkit.eval.grading import grade
from rlkit.eval.metrics import math_metrics
from rlkit.eval.suites import math_prompt_text


def generate_samples(
    rows: Sequence[dict[str, Any]], engine: Any, tokenizer: Any, settings: EvalSettings
) -> list[dict[str, Any]]:
    """Greedy pass always; plus `settings.n` sampled completions when temperature > 0."""
    from rlkit.engines.rollout_protocol import SamplingConfig

    texts = [math_prompt_text(r["question"]) for r in rows]
    prompts = encode_prompts(tokenizer, texts, settings.chat_template)
    max_tokens = settings.tokens_for("math")
    passes = [(True, SamplingConfig(n=1, temperature=0.0, max_tokens=max_tokens))]
    if settings.temperature > 0:
        sampled = SamplingConfig(
            n=settings.n,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_tokens=max_tokens,
            seed=settings.seed,
        )
        passes.append((False, sampled))
    samples: list[dict[str, Any]] = []
    for greedy, cfg in passes:
        pairs = list(zip(rows, prompts, strict=True))

        def call(chunk, cfg=cfg):
            return engine.generate([p for _, p in chunk], cfg)

        desc = "math greedy" if greedy else f"math sample n={cfg.n}"
        outs = run_batched(
            pairs, call, size=settings.batch_size, desc=desc, progress=settings.progress
        )
        for (row, _), comps in zip(pairs, outs, strict=True):
            for j, c in enumerate(comps):
                samples.append(
                    _sample(row["id"], j, greedy, c.text, len(c.token_ids), c.finish_reason)
                )
    return samples


def samples_from_predictions(
    rows: Sequence[dict[str, Any]], preds: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Samples from prediction records; a row with none gets empty (wrong) samples, flagged."""
    samples: list[dict[str, Any]] = []
    per_id = max((len(v) for v in preds.values()), default=1)
    for row in rows:
        recs = preds.get(row["id"])
        if not recs:
            for j in range(per_id):
                s = _sample(row["id"], j, False, "", None, None)
                s["missing"] = True
                samples.append(s)
            continue
        for j, rec in enumerate(recs):
            samples.append(
                _sample(
                    row["id"],
                    j,
                    bool(rec.get("greedy", False)),
                    rec["completion"],
                    rec.get("num_tokens"),
                    rec.get("finish_reason"),
                )
            )
    return samples


def _sample(
    rid: str, j: int, greedy: bool, text: str, num_tokens: int | None, finish: str | None
) -> dict[str, Any]:
    return {
        "id": rid,
        "sample": j,
        "greedy": greedy,
        "completion": text,
        "num_tokens": num_tokens,
        "finish_reason": finish,
    }


def grade_samples(rows: Sequence[dict[str, Any]], samples: list[dict[str, Any]]) -> None:
    """Add `gold`, `pred`, `correct` (and `level`) to every sample, in the calling thread.

    Call from the main thread: math-verify's timeouts (a timeout = wrong) need it.
    """
    by_id = {r["id"]: r for r in rows}
    for s in samples:
        row = by_id[s["id"]]
        s["gold"] = row["gold"]
        s["pred"], s["correct"] = grade(row["gold"], s["completion"])
        if "level" in row:
            s["level"] = row["level"]


def score_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics of graded samples (see `rlkit.eval.metrics.math_metrics`)."""
    groups: dict[str, list[bool]] = {}
    greedy: dict[str, bool] = {}
    for s in samples:
        groups.setdefault(s["id"], [])
        if s["greedy"]:
            greedy[s["id"]] = bool(s["correct"])
        else:
            groups[s["id"]].append(bool(s["correct"]))
    tokens = [s["num_tokens"] for s in samples]
    if all(t is not None for t in tokens):
        lengths, unit = [int(t) for t in tokens], "tokens"
    else:
        lengths, unit = [len(s["completion"]) for s in samples], "chars"
    truncated = [
        None if s["finish_reason"] is None else s["finish_reason"] == "length" for s in samples
    ]
    out = math_metrics(groups, greedy, lengths, truncated, unit)
    out["missing_predictions"] = len({s["id"] for s in samples if s.get("missing")})
    return out


def evaluate_graded(
    rows: Sequence[dict[str, Any]],
    settings: EvalSettings,
    suite: Any,
    *,
    engine: Any = None,
    tokenizer: Any = None,
    predictions: dict[str, list[dict[str, Any]]] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics, graded samples) of a completion-graded suite (maths here, code in
    rlkit.eval.humaneval): samples from a model (`suite.generate_samples`) or from predictions,
    graded in place by `suite.grade_samples`, scored as pass@k / avg@n (`score_samples`)."""
    if predictions is not None:
        samples = samples_from_predictions(rows, predictions)
    else:
        samples = suite.generate_samples(rows, engine, tokenizer, settings)
    suite.grade_samples(rows, samples)
    return score_samples(samples), samples
