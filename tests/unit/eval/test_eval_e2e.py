"""End to end: `rlkit.eval.cli.main` with --engine hf on a tiny checkpoint (math and rec)."""

from __future__ import annotations

import importlib.util
import json

from rlkit.eval.cli import main

HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def _read(out):
    results = json.loads((out / "results.json").read_text())
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    return results, samples


def test_math_suite_with_hf_engine(tmp_path, tiny_ckpt, jsonl):
    data = jsonl(
        tmp_path / "math500.jsonl",
        [
            {"problem": "1+1?", "answer": "2", "level": 1},
            {"problem": "2+2?", "answer": "4", "level": 2},
        ],
    )
    out = tmp_path / "out"
    args = ["--suite", "math500", "--model", str(tiny_ckpt), "--engine", "hf", "--data", str(data)]
    args += ["--out", str(out), "--n", "2", "--temperature", "1.0", "--max-tokens", "6"]
    assert main([*args, "--no-progress"]) == 0
    results, samples = _read(out)
    assert set(results) == {"suite", "model", "settings", "metrics"}
    assert results["settings"]["engine"] == "hf" and results["settings"]["n"] == 2
    m = results["metrics"]
    for key in ("pass@1", "avg@2", "pass@2", "mean_response_length", "truncation_rate"):
        assert key in m
    assert m["pass@1_source"] == "greedy" and m["response_length_unit"] == "tokens"
    assert len(samples) == 2 * (1 + 2)  # one greedy + two sampled per problem
    assert sum(s["greedy"] for s in samples) == 2
    for s in samples:
        assert {"id", "pred", "correct", "gold", "completion"} <= set(s)
        assert 1 <= s["num_tokens"] <= 6
        assert s["correct"] is False  # a random model does not answer in a box
    assert 0.0 <= m["truncation_rate"] <= 1.0
    assert (out / "report.md").is_file()
    if HAS_MPL:
        assert (out / "length_hist.png").stat().st_size > 0
        assert (out / "accuracy_by_level.png").stat().st_size > 0
        assert "accuracy_by_level.png" in (out / "report.md").read_text()


def test_rec_suite_with_hf_engine(tmp_path, tiny_ckpt, rec_files):
    csv_path, items = rec_files
    out = tmp_path / "out"
    args = ["--suite", "rec", "--model", str(tiny_ckpt), "--engine", "hf", "--data", str(csv_path)]
    args += ["--items", str(items), "--out", str(out), "--num-beams", "6", "--max-tokens", "16"]
    assert main([*args, "--limit", "3", "--no-progress"]) == 0
    results, samples = _read(out)
    m = results["metrics"]
    for k in (1, 3, 5, 10, 20):
        assert f"HR@{k}" in m and f"NDCG@{k}" in m
    assert m["invalid_rate"] == 0.0 and m["num_rows"] == 3
    # 6 beams over a 6-item catalogue: every item comes back, so every target is ranked
    assert len(samples) == 3
    for s in samples:
        assert sorted(s["items"]) == sorted(["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta"])
        assert s["rank"] == s["items"].index(s["target"])
        assert s["scores"] == sorted(s["scores"], reverse=True)
    assert m["HR@20"] == 1.0 and m["HR@1"] <= m["HR@3"] <= m["HR@5"]
    assert (out / "report.md").is_file()
    if HAS_MPL:
        assert (out / "hr_ndcg.png").stat().st_size > 0


def test_run_suite_library_entry_point(tiny_ckpt, rec_files):
    from rlkit.engines.hf_engine import HFEngine
    from rlkit.eval import run_suite

    csv_path, items = rec_files
    eng = HFEngine(str(tiny_ckpt))
    settings = {"num_beams": 3, "max_tokens": 16, "limit": 2, "progress": False}
    m = run_suite(
        "rec",
        engine=eng,
        tokenizer=eng.tokenizer,
        data=str(csv_path),
        items=str(items),
        settings=settings,
    )
    assert m["num_rows"] == 2 and m["num_items_returned"] == 6 and m["invalid_rate"] == 0.0
