"""Checkpoint evaluation on math, recommendation and code (HumanEval) suites (docs/evaluation.md).

Light to import: heavy libraries (torch, transformers, math-verify, matplotlib) load lazily.

- `run_suite(suite, *, engine, tokenizer, data, items=None, settings=None) -> dict` metrics,
  for the trainer; `evaluate_suite(...)` also returns the graded samples.
- `rlkit.eval.cli.main(argv) -> int`: the `rlkit eval` command.
- `rlkit.eval.metrics`: pass@k, HR@K / NDCG@K; `rlkit.eval.movielens`: ml-100k conversion.
"""

from rlkit.eval.errors import EvalInputError
from rlkit.eval.generation import EvalSettings
from rlkit.eval.runner import EvalResult, evaluate_suite, run_suite
from rlkit.eval.suites import MATH_SUITES, REC_SUITES, SUITES

__all__ = [
    "EvalInputError",
    "EvalResult",
    "EvalSettings",
    "MATH_SUITES",
    "REC_SUITES",
    "SUITES",
    "evaluate_suite",
    "run_suite",
]
