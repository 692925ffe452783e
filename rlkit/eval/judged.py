"""Judge-graded evaluation (`rlkit eval ... --judge FOLDER`): a generative judge reads each
sample (the row's question, the completion, the gold answer) and its verdict goes into
samples.jsonl (`judge_verdict`; None when a regex verdict did not parse) and the metrics:

    judge/mean            mean verdict over the samples it could read
    judge/parse_failures  samples whose verdict did not parse (`--judge-verdict regex`)
    judge/agreement       share of samples where (verdict >= 0.5) equals the rule grade `correct`

The judge is the same scorer as a recipe's `reward.models` judge (rlkit.rewards.models.scorers:
P(yes)/(P(yes)+P(no)) of two verdict tokens, or a regex over greedy text), loaded in this
process on vLLM or transformers.
"""

from __future__ import annotations

import argparse
from typing import Any

from rlkit.eval.errors import EvalInputError

QUESTION_FIELDS = ("problem", "question", "prompt")


def add_judge_args(p: argparse.ArgumentParser) -> None:
    """The `--judge*` options of `rlkit eval`."""
    p.add_argument("--judge", help="HF folder of a judge LM grading every sample (optional)")
    p.add_argument("--judge-engine", choices=("vllm", "hf"), default="vllm")
    p.add_argument("--judge-template", default="", help="{prompt} {response} {answer}")
    p.add_argument("--judge-verdict", choices=("logprob", "regex"), default="logprob")
    p.add_argument("--judge-tokens", nargs=2, default=[" Yes", " No"], metavar=("YES", "NO"))
    p.add_argument("--judge-regex", default=r"^\s*([\w.]+)")
    p.add_argument("--judge-max-model-len", type=int, default=2048)
    p.add_argument("--judge-chat-template", action="store_true")


def judge_config(a: argparse.Namespace) -> Any:
    """The judge's RewardModelConfig from the CLI options (EvalInputError on a bad one)."""
    from rlkit.config.schema import RewardModelConfig
    from rlkit.config.semantics import reward_model_errors

    cfg = RewardModelConfig(
        name="judge",
        kind="judge",
        path=a.judge,
        engine=a.judge_engine,
        template=a.judge_template,
        chat_template=a.judge_chat_template,
        verdict=a.judge_verdict,
        verdict_tokens=list(a.judge_tokens),
        regex=a.judge_regex,
        max_model_len=a.judge_max_model_len,
        max_batch=a.batch_size,
        cache_size=0,
        dtype=a.dtype,
    )
    for key, msg in reward_model_errors([cfg]):
        raise EvalInputError(f"--judge: {key.split('.')[-1]}: {msg}")
    return cfg


def judge_samples(result: Any, cfg: Any) -> dict[str, float]:
    """Add `judge_verdict` to every sample of `result` (in place); return the judge metrics."""
    from rlkit.rewards.models.scorers import make_scorer

    if result.kind == "rec":
        raise EvalInputError("--judge grades completions: math and code suites only")
    try:
        scorer = make_scorer(cfg, cfg.path)
    except ValueError as exc:  # e.g. a verdict token that is several tokens
        raise EvalInputError(f"--judge: {exc}") from None
    rows = {r["id"]: r for r in result.rows}
    items = [_item(rows.get(s["id"], {}), s) for s in result.samples]
    verdicts: list[float | None] = []
    for i in range(0, len(items), cfg.max_batch):
        verdicts += scorer.score(items[i : i + cfg.max_batch])
    for s, v in zip(result.samples, verdicts, strict=True):
        s["judge_verdict"] = v
    return judge_metrics(result.samples)


def _item(row: dict[str, Any], sample: dict[str, Any]) -> dict[str, Any]:
    question = next((row[f] for f in QUESTION_FIELDS if f in row), "")
    return {"prompt": str(question), "response": sample["completion"],
            "answer": sample.get("gold", row.get("gold"))}  # fmt: skip


def judge_metrics(samples: list[dict[str, Any]]) -> dict[str, float]:
    read = [s for s in samples if s.get("judge_verdict") is not None]
    out = {
        "judge/mean": sum(s["judge_verdict"] for s in read) / len(read) if read else 0.0,
        "judge/parse_failures": float(len(samples) - len(read)),
    }
    graded = [s for s in read if "correct" in s]
    if graded:
        agree = sum((s["judge_verdict"] >= 0.5) == bool(s["correct"]) for s in graded)
        out["judge/agreement"] = agree / len(graded)
    return out
