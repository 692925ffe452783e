"""`rlkit train RECIPE --seeds N`: N runs with distinct seeds in runs/NAME/seed_K, which
`rlkit compare` then reads as one group (training itself monkeypatched out)."""

from __future__ import annotations

import json

import pytest

from rlkit.cli import main


@pytest.fixture
def trained(monkeypatch):
    """Replace rlkit.runtime.run.train: record each config and leave a run dir with metrics
    whose reward is the run's seed (so the group's mean is known)."""
    import rlkit.runtime.run as run_module
    from rlkit.runtime.prepare import make_run_dir

    seen = []

    def fake_train(cfg, resume):
        run_dir = make_run_dir(cfg)
        (run_dir / "metrics.jsonl").write_text(
            json.dumps({"step": 1, "reward/mean": float(cfg.seed)}) + "\n"
        )
        seen.append((cfg, resume, run_dir))

    monkeypatch.setattr(run_module, "train", fake_train)
    return seen


def test_seeds_run_in_seed_dirs_with_distinct_seeds(tmp_path, trained, capsys):
    runs = tmp_path / "runs"
    rc = main(
        ["train", "recipes/quickstart.yaml", "--seeds", "3", "seed=7"]
        + [f"logging.runs_dir={runs}", "trainer.lr=3e-4"]
    )
    assert rc == 0
    assert [cfg.seed for cfg, _, _ in trained] == [7, 8, 9]
    assert [d for _, _, d in trained] == [runs / "quickstart" / f"seed_{k}" for k in range(3)]
    assert all(cfg.trainer.lr == 3e-4 and resume is None for cfg, resume, _ in trained)
    printed = capsys.readouterr().out
    assert f"rlkit compare {runs / 'quickstart'} --metric reward/mean" in printed
    # the group they leave is what compare reads: three runs, rewards 7, 8, 9
    out = tmp_path / "cmp"
    assert (
        main(["compare", str(runs / "quickstart"), "--metric", "reward/mean", "--out", str(out)])
        == 0
    )
    group = json.loads((out / "compare.json").read_text())["groups"][0]
    assert (group["name"], group["n"], group["mean"]) == ("quickstart", 3, 8.0)


def test_without_seeds_one_run_in_the_named_dir(tmp_path, trained):
    assert main(["train", "recipes/quickstart.yaml", f"logging.runs_dir={tmp_path}"]) == 0
    [(cfg, _, run_dir)] = trained
    assert cfg.seed == 0 and run_dir == tmp_path / "quickstart"


@pytest.mark.parametrize("extra", [["--seeds", "0"], ["--seeds", "2", "--resume", "runs/x"]])
def test_bad_seed_requests_are_refused_before_training(extra, trained, capsys):
    assert main(["train", "recipes/quickstart.yaml"] + extra) == 2
    assert "--seeds" in capsys.readouterr().err and trained == []
