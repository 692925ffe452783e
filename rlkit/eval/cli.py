"""`rlkit eval`: evaluate a checkpoint (or a predictions file) on a suite; see docs/evaluation.md.

    rlkit eval --suite gsm8k --model CKPT_DIR --data gsm8k_test.jsonl --out runs/eval/gsm8k
    rlkit eval --suite rec --predictions preds.jsonl --data test.csv --items items.txt --out OUT
    rlkit eval --suite humaneval --predictions completions.jsonl --out OUT

Writes OUT/results.json ({"suite", "model", "settings", "metrics"}), OUT/samples.jsonl (one
graded sample per line) and OUT/report.md with PNG plots. Everything is written into a temporary
sibling directory first and renamed to OUT at the end, so a failed run leaves nothing behind.
Bad input exits with status 2 and one line naming the file, line and field.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from rlkit.eval.data import EvalInputError
from rlkit.eval.generation import EvalSettings
from rlkit.eval.suites import SUITES, get_suite


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlkit eval", description=__doc__.split("\n")[0])
    p.add_argument("--suite", required=True, help=f"one of: {', '.join(SUITES)}")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="HF checkpoint folder to generate with")
    src.add_argument("--predictions", help="JSONL of given completions/rankings to score")
    p.add_argument(
        "--data",
        help="local data file (ml-100k: directory); default: math the hub, humaneval the package's",
    )
    p.add_argument("--items", help="catalogue file, lines 'sid<TAB>title<TAB>id' (rec)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--engine", choices=("vllm", "hf"), default="vllm")
    p.add_argument("--n", type=int, default=1, help="samples per problem when temperature > 0")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument(
        "--max-tokens", type=int, default=None, help="default: math 1024, rec 64, humaneval 512"
    )
    p.add_argument("--num-beams", type=int, default=20)
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N rows only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32, help="prompts per engine call")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu", help="--engine hf only")
    p.add_argument("--max-model-len", type=int, default=None, help="--engine vllm: context size")
    p.add_argument("--no-chat-template", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    from rlkit.eval.judged import add_judge_args

    add_judge_args(p)  # judge-graded suites: --judge FOLDER (rlkit.eval.judged)
    return p


def _make_engine(kind: str, model_path: str, **kw: Any) -> Any:
    """The lead's `rlkit.engines.make_rollout_engine` when it exists, else a local fallback."""
    try:
        from rlkit.engines import make_rollout_engine
    except ImportError:
        make_rollout_engine = None
    if make_rollout_engine is not None:
        return make_rollout_engine(kind, model_path, **kw)
    if kind == "hf":
        from rlkit.engines.hf_engine import HFEngine

        return HFEngine(model_path, **kw)
    if kind == "vllm":
        from rlkit.engines.vllm_engine import VLLMEngine

        kw.pop("device", None)
        return VLLMEngine(model_path, **kw)
    raise ValueError(f"unknown engine {kind!r}; use 'vllm' or 'hf'")


def _settings(a: argparse.Namespace) -> EvalSettings:
    return EvalSettings(
        n=a.n,
        temperature=a.temperature,
        top_p=a.top_p,
        max_tokens=a.max_tokens,
        num_beams=a.num_beams,
        limit=a.limit,
        seed=a.seed,
        batch_size=a.batch_size,
        chat_template=False if a.no_chat_template else None,
        progress=not a.no_progress,
    )


def _check_args(a: argparse.Namespace) -> Path:
    """Validate cheap things before any model loads; returns the output path."""
    spec = get_suite(a.suite)
    if spec.kind == "rec" and a.model and spec.name == "rec" and not a.items:
        raise EvalInputError("suite 'rec' with --model needs --items (the catalogue)")
    if spec.kind == "rec" and not a.data:
        raise EvalInputError(f"suite {a.suite!r} needs --data")
    for name in ("n", "num_beams", "batch_size"):
        if getattr(a, name) < 1:
            raise EvalInputError(f"--{name.replace('_', '-')} must be >= 1")
    out = Path(a.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not a.overwrite:
        raise EvalInputError(f"{out}: output exists and is not empty (use --overwrite)")
    return out


def _evaluate(a: argparse.Namespace, settings: EvalSettings):
    from rlkit.eval.runner import evaluate_suite

    if a.predictions:
        return evaluate_suite(
            a.suite, data=a.data, items=a.items, settings=settings, predictions=a.predictions
        )
    kw: dict[str, Any] = {"dtype": a.dtype, "seed": a.seed}
    if a.engine == "hf":
        kw["device"] = a.device
    elif a.max_model_len is not None:
        kw["max_model_len"] = a.max_model_len
    engine = _make_engine(a.engine, a.model, **kw)
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(a.model)
    return evaluate_suite(
        a.suite, engine=engine, tokenizer=tokenizer, data=a.data, items=a.items, settings=settings
    )


def _write_outputs(result: Any, a: argparse.Namespace, settings: EvalSettings, tmp: Path):
    from rlkit.eval.grading import grader_name
    from rlkit.eval.report import write_report

    extra = {"engine": a.engine if a.model else None, "data": a.data, "items": a.items}
    if result.kind == "math":
        extra["grader"] = grader_name()
    elif result.kind == "code":
        extra["grader"] = "rlkit.sandbox (bubblewrap), tests must run to their end"
    results = {
        "suite": a.suite,
        "model": a.model or f"predictions:{a.predictions}",
        "settings": {**settings.to_dict(), **extra},
        "metrics": result.metrics,
    }
    (tmp / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    with (tmp / "samples.jsonl").open("w", encoding="utf-8") as f:
        for s in result.samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    # code samples have the math shape (completions, lengths): the same report
    write_report(results, "rec" if result.kind == "rec" else "math", result.samples, tmp)
    return results


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished temp dir to `out`, replacing an existing one only at the very end."""
    trash = None
    if out.exists():
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, trash)
    os.rename(tmp, out)
    if trash is not None and trash.is_dir():
        shutil.rmtree(trash, ignore_errors=True)
    elif trash is not None:
        trash.unlink()


def main(argv: list[str]) -> int:
    """Run `rlkit eval` with `argv` (without the 'eval' word); returns the exit status."""
    try:
        a = build_parser().parse_intermixed_args(argv)
    except SystemExit as e:  # argparse already printed its message
        return int(e.code or 0)
    try:
        out = _check_args(a)
        settings = _settings(a)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            judge = None
            if a.judge:
                from rlkit.eval.judged import judge_config, judge_samples

                judge = judge_config(a)
            result = _evaluate(a, settings)
            if judge is not None:
                result.metrics.update(judge_samples(result, judge))
            results = _write_outputs(result, a, settings, tmp)
            _publish(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    except EvalInputError as e:
        print(f"rlkit eval: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(results["metrics"], indent=2))
    print(f"wrote {out}/results.json, samples.jsonl, report.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
