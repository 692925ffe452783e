"""`rlkit compare` on made-up run directories: groups of seeds, single runs, errors, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rlkit.analysis.runs import CompareError, group_runs, metric_series
from rlkit.cli import main

T2 = math.sqrt(2 / (4 * 0.975 * 0.025) - 2)  # t_{0.975, 2}, closed form


def write_run(run_dir: Path, values: list[float | None], metric: str = "reward/mean") -> Path:
    """A run dir as rlkit train leaves it: config.yaml and one metrics row per step."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text("name: made_up\n")
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step, v in enumerate(values, 1):
            row = {"step": step, "loss": 0.1}
            if v is not None or step % 2:  # even steps without a value leave the key out
                row[metric] = v
            f.write(json.dumps(row) + "\n")
    return run_dir


def test_a_run_dir_is_one_run_and_a_dir_of_seeds_is_many(tmp_path):
    single = write_run(tmp_path / "single", [1.0])
    for k in range(3):
        write_run(tmp_path / "group" / f"seed_{k}", [1.0])
    (tmp_path / "group" / "compare").mkdir()  # an output folder, not a run: ignored
    assert group_runs(single) == [single]
    assert [p.name for p in group_runs(tmp_path / "group")] == ["seed_0", "seed_1", "seed_2"]


def test_rows_without_the_metric_or_with_null_are_skipped(tmp_path):
    run = write_run(tmp_path / "r", [1.0, None, 3.0, None, None, 6.0])
    assert metric_series(run, "reward/mean") == [(1, 1.0), (3, 3.0), (6, 6.0)]


def test_a_missing_metric_names_the_run_and_the_metric(tmp_path, capsys):
    write_run(tmp_path / "grpo" / "seed_0", [1.0, 2.0])
    write_run(tmp_path / "grpo" / "seed_1", [1.0, 2.0], metric="other")
    with pytest.raises(CompareError, match=r"seed_1 has no metric 'reward/mean'.*other"):
        metric_series(tmp_path / "grpo" / "seed_1", "reward/mean")
    rc = main(["compare", str(tmp_path / "grpo"), "--metric", "reward/mean", "--out", "o"])
    err = capsys.readouterr().err
    assert rc == 2 and "seed_1" in err and "'reward/mean'" in err
    assert err.count("\n") == 1  # one line, no traceback


def test_a_seed_that_never_logged_is_an_error_not_dropped(tmp_path):
    write_run(tmp_path / "g" / "seed_0", [1.0])
    (tmp_path / "g" / "seed_1").mkdir()
    (tmp_path / "g" / "seed_1" / "config.yaml").write_text("name: x\n")
    with pytest.raises(CompareError, match="seed_1 has no metrics.jsonl"):
        group_runs(tmp_path / "g")
    with pytest.raises(CompareError, match="no metrics.jsonl"):
        group_runs(tmp_path / "g" / "seed_1")


def test_cli_writes_json_and_png_for_seeds_vs_a_single_run(tmp_path, capsys):
    # group "grpo": 3 seeds whose last-2 means are 1, 2, 3; group "vps": one run, last-2 mean 6
    for k, final in enumerate([1.0, 2.0, 3.0]):
        write_run(tmp_path / "grpo" / f"seed_{k}", [100.0, final - 0.5, final + 0.5])
    write_run(tmp_path / "vps", [0.0, 5.0, 7.0])
    out = tmp_path / "cmp"
    rc = main(
        ["compare", str(tmp_path / "grpo"), str(tmp_path / "vps") + "/"]
        + ["--metric", "reward/mean", "--last", "2", "--out", str(out)]
    )
    assert rc == 0
    result = json.loads((out / "compare.json").read_text())
    half = T2 / math.sqrt(3)
    assert result["metric"] == "reward/mean"
    grpo, vps = result["groups"]
    assert (grpo["name"], grpo["n"], grpo["mean"]) == ("grpo", 3, pytest.approx(2.0))
    assert grpo["ci95"] == [pytest.approx(2 - half), pytest.approx(2 + half)]
    assert vps == {"name": "vps", "n": 1, "mean": 6.0, "ci95": [6.0, 6.0]}
    # vps − grpo = 4; the single run contributes no variance, so ν = 2 and se = 1/√3
    assert result["difference"]["mean"] == pytest.approx(4.0)
    assert result["difference"]["ci95"] == [pytest.approx(4 - half), pytest.approx(4 + half)]
    png = (out / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "grpo: n=3" in capsys.readouterr().out


def test_default_last_is_five_logged_steps(tmp_path):
    # a: values 1..10 (mean of the last five: 8); b: odd steps only, 1,3,...,11 (last five: 7)
    write_run(tmp_path / "a", [float(v) for v in range(1, 11)])
    write_run(tmp_path / "b", [float(v) if v % 2 else None for v in range(1, 12)])
    out = tmp_path / "o"
    args = ["--metric", "reward/mean", "--out", str(out)]
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")] + args) == 0
    result = json.loads((out / "compare.json").read_text())
    assert [g["mean"] for g in result["groups"]] == [8.0, 7.0]
    assert result["difference"] == {"mean": -1.0, "ci95": [-1.0, -1.0]}


def test_usage_errors(tmp_path, capsys):
    write_run(tmp_path / "x" / "g", [1.0])
    write_run(tmp_path / "y" / "g", [1.0])
    base = ["--metric", "reward/mean", "--out", str(tmp_path / "o")]
    assert main(["compare", str(tmp_path / "x" / "g"), str(tmp_path / "y" / "g")] + base) == 2
    assert "distinct base names" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "x" / "g"), "--last", "0"] + base) == 2
    assert main(["compare", str(tmp_path / "nowhere")] + base) == 2
    assert "not a directory" in capsys.readouterr().err
