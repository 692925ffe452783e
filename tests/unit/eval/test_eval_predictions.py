"""`rlkit eval --predictions`: scoring without a model (math and rec), and bad-input errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rlkit.eval.cli import main


def run_cli(args: list[str]) -> int:
    return main([*args, "--no-progress"])


def read_out(out: Path) -> tuple[dict, list[dict]]:
    results = json.loads((out / "results.json").read_text())
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    return results, samples


def test_math_predictions_gsm8k(tmp_path, gsm8k_file, jsonl):
    preds = jsonl(
        tmp_path / "preds.jsonl",
        [
            {"id": 0, "completion": "1000+234 = \\boxed{1234}"},
            {"id": 0, "completion": "I think \\boxed{1233}"},
            {"id": 1, "completion": "\\boxed{8}"},
            {"id": 1, "completion": "so the answer is \\boxed{7}."},
            {"id": 2, "completion": "the answer is 10 (no box)", "finish_reason": "length"},
            {"id": 2, "completion": "\\boxed{11}", "finish_reason": "stop"},
        ],
    )
    out = tmp_path / "out"
    args = ["--suite", "gsm8k", "--predictions", str(preds), "--data", str(gsm8k_file)]
    assert run_cli([*args, "--out", str(out)]) == 0
    results, samples = read_out(out)
    m = results["metrics"]
    assert results["suite"] == "gsm8k" and results["model"].startswith("predictions:")
    assert m["avg@2"] == pytest.approx(1 / 3)  # (1/2 + 1/2 + 0) / 3
    assert m["pass@2"] == pytest.approx(2 / 3)
    assert m["pass@1"] == pytest.approx(1 / 3) and m["pass@1_source"] == "sampled"
    assert m["truncation_rate"] == 0.5  # only id 2 reports finish reasons
    assert m["response_length_unit"] == "chars"
    assert len(samples) == 6
    assert [s["correct"] for s in samples] == [True, False, False, True, False, False]
    assert samples[0]["pred"] == "1234" and samples[4]["pred"] is None
    assert (out / "report.md").is_file()
    assert not list(tmp_path.glob(".out.tmp-*"))  # the temp dir was renamed away


def test_math_predictions_greedy_flag_gives_pass1(tmp_path, gsm8k_file, jsonl):
    preds = jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": 0, "completion": "\\boxed{1234}", "greedy": True},
            {"id": 1, "completion": "\\boxed{3}", "greedy": True},
            {"id": 2, "completion": "\\boxed{10}", "greedy": True},
        ],
    )
    out = tmp_path / "o"
    args = ["--suite", "gsm8k", "--predictions", str(preds), "--data", str(gsm8k_file)]
    assert run_cli([*args, "--out", str(out)]) == 0
    m, _ = read_out(out)
    assert m["metrics"]["pass@1"] == pytest.approx(2 / 3)
    assert m["metrics"]["pass@1_source"] == "greedy"


def test_rec_predictions_hr_ndcg(tmp_path, rec_files, jsonl):
    csv_path, items = rec_files
    preds = jsonl(
        tmp_path / "preds.jsonl",
        [
            {"id": 0, "items": ["Alpha", "Beta", "Gamma"]},  # target Beta: rank 1
            {"id": 1, "items": ["Not An Item", "Gamma"]},  # invalid slot 0, Gamma: rank 1
            {"id": 2, "items": ["Delta", "Delta", "Epsilon", "Alpha"]},  # dup dropped: rank 2
            {"id": 3, "items": ["Alpha", "Beta"]},  # target Zeta: miss
        ],  # row 4 has no prediction: a miss, counted as missing
    )
    out = tmp_path / "out"
    args = ["--suite", "rec", "--predictions", str(preds), "--data", str(csv_path)]
    assert run_cli([*args, "--items", str(items), "--out", str(out)]) == 0
    results, samples = read_out(out)
    m = results["metrics"]
    assert [s["rank"] for s in samples] == [1, 1, 2, None, None]
    assert m["HR@1"] == 0.0
    assert m["HR@3"] == pytest.approx(3 / 5)
    assert m["NDCG@3"] == pytest.approx((2 / math.log2(3) + 1 / math.log2(4)) / 5)
    assert m["HR@20"] == pytest.approx(3 / 5)
    assert m["invalid_rate"] == pytest.approx(1 / 11)
    assert m["missing_predictions"] == 1 and m["num_rows"] == 5
    assert samples[1]["items"][0] is None


def test_ml100k_suite_from_atomic_dir(tmp_path, ml100k_dir, jsonl):
    data = ml100k_dir
    preds = jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": 0, "items": ["Movie 13 (2003)"]},
            {"id": 1, "items": ["Movie 2 (1992)", "Movie 1 (1991)"]},
        ],
    )
    out = tmp_path / "o"
    args = ["--suite", "ml-100k", "--predictions", str(preds), "--data", str(data)]
    assert run_cli([*args, "--out", str(out)]) == 0
    m, _ = read_out(out)
    assert m["metrics"]["HR@1"] == 0.5 and m["metrics"]["HR@3"] == 1.0


@pytest.mark.parametrize(
    "lines, needle",
    [
        (
            [{"question": "q", "answer": "#### 1"}, {"question": "q2"}],
            "gsm8k.jsonl:2: field 'answer'",
        ),
        ([{"answer": "#### 1"}], "gsm8k.jsonl:1: field 'question'"),
        ([{"question": "q", "answer": "no marker"}], "gsm8k.jsonl:1: field 'answer'"),
    ],
)
def test_bad_math_data_one_clear_error(tmp_path, capsys, lines, needle, jsonl):
    data = jsonl(tmp_path / "gsm8k.jsonl", lines)
    preds = jsonl(tmp_path / "p.jsonl", [{"id": 0, "completion": "x"}])
    out = tmp_path / "out"
    args = ["--suite", "gsm8k", "--predictions", str(preds), "--data", str(data)]
    assert run_cli([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_bad_inputs_name_file_line_field(tmp_path, capsys, rec_files, gsm8k_file, jsonl):
    csv_path, items = rec_files
    out = str(tmp_path / "out")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("user_id,history_item_title,item_title\nu1,\"['A'\",B\n")
    preds = jsonl(tmp_path / "p.jsonl", [{"id": 0, "items": "Alpha"}])
    cases = [
        (["--suite", "nope", "--predictions", str(preds)], "unknown suite 'nope'"),
        (
            ["--suite", "rec", "--predictions", str(preds), "--data", str(bad_csv)],
            "bad.csv:2: field 'history_item_title'",
        ),
        (
            ["--suite", "rec", "--predictions", str(preds), "--data", str(csv_path)],
            "p.jsonl:1: field 'items'",
        ),
        (
            ["--suite", "rec", "--predictions", str(preds), "--data", str(tmp_path / "none.csv")],
            "none.csv: file not found",
        ),
        (
            [
                "--suite",
                "gsm8k",
                "--predictions",
                str(jsonl(tmp_path / "q.jsonl", [{"id": 7, "completion": "x"}])),
                "--data",
                str(gsm8k_file),
            ],
            "q.jsonl:1: field 'id'",
        ),
    ]
    for args, needle in cases:
        assert run_cli([*args, "--out", out]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (err, needle)
        assert not Path(out).exists()
