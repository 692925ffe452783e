"""`logging.trackers`: W&B (offline mode) and MLflow (a file store) receive the config, every
metric and the curves, and a resumed run continues the same tracker run; read back offline
with the real libraries."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from rlkit.config import ConfigError, load_recipe, to_dict
from rlkit.runtime.controller.metrics_logger import MetricsLogger
from rlkit.runtime.controller.trackers import check_installed, start_trackers

pytest.importorskip("wandb", reason="extra rlkit[trackers] not installed")
pytest.importorskip("mlflow", reason="extra rlkit[trackers] not installed")

BLOCK = 32768  # W&B's transaction log: LevelDB-style 32 KiB blocks after a 7-byte header


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's `run-<id>.wandb` file (no reader ships)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf, out = 7, b"", []
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL/FIRST start a record
        if kind in (1, 4):  # FULL/LAST end it
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def wandb_history(run_dir: Path, run_id: str) -> tuple[dict, list[dict], list[str]]:
    """(config, history rows, media files) of the offline W&B runs with `run_id` (one folder
    per start; a start in the same second as the last gets a `-1` suffix)."""
    config, rows, media = {}, [], []
    for f in sorted(run_dir.glob(f"wandb/offline-run-*-{run_id}*/run-{run_id}.wandb")):
        for rec in wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                config.update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
            elif kind == "config":
                config.update({u.key: json.loads(u.value_json) for u in rec.config.update})
            elif kind == "history":
                rows.append(
                    {"/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                )
            elif kind == "files":
                media += [x.path for x in rec.files.files if x.path.startswith("media/")]
    return config, rows, media


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def run_once(run_dir: Path, steps: range, resumed: bool) -> dict:
    cfg = load_recipe("recipes/quickstart.yaml", ["trainer.lr=3e-4"])
    trackers = start_trackers(["wandb", "mlflow"], run_dir, run_dir.parent, to_dict(cfg), resumed)
    logger = MetricsLogger(run_dir, tensorboard=False, console=False, trackers=trackers)
    for s in steps:
        logger.log({"step": s, "reward/mean": s / 10, "note": "text", "ok": True})
    logger.log_eval({"step": steps[-1], "eval/math/acc": 0.5})
    logger.close()
    return json.loads((run_dir / "trackers.json").read_text())


def mlflow_client(run_dir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"file:{(run_dir.parent / 'mlruns').resolve()}")


def test_wandb_and_mlflow_get_config_metrics_and_curves(tmp_path, offline):
    run_dir = tmp_path / "runs" / "quickstart"
    ids = run_once(run_dir, range(1, 4), resumed=False)

    config, rows, media = wandb_history(run_dir, ids["wandb"])
    assert config["trainer"]["lr"] == 3e-4 and config["name"] == "quickstart"
    logged = {r["step"]: r["reward/mean"] for r in rows if "reward/mean" in r}
    assert logged == {1: 0.1, 2: 0.2, 3: 0.3}
    assert any(r.get("eval/math/acc") == 0.5 for r in rows)
    assert not any("note" in r or "ok" in r for r in rows)  # only numbers are metrics
    assert any(m.endswith(".png") and "curves" in m for m in media)

    client = mlflow_client(run_dir)
    history = client.get_metric_history(ids["mlflow"], "reward/mean")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert client.get_metric_history(ids["mlflow"], "eval/math/acc")[0].value == 0.5
    run = client.get_run(ids["mlflow"])
    assert run.data.params["trainer.lr"] == "0.0003" and run.info.status == "FINISHED"
    assert {"curves.png", "config.yaml"} <= {a.path for a in client.list_artifacts(ids["mlflow"])}


def test_resume_continues_the_same_tracker_runs(tmp_path, offline):
    run_dir = tmp_path / "runs" / "quickstart"
    first = run_once(run_dir, range(1, 3), resumed=False)
    again = run_once(run_dir, range(3, 5), resumed=True)
    assert again == first
    _, rows, _ = wandb_history(run_dir, first["wandb"])
    assert sorted(r["step"] for r in rows if "reward/mean" in r) == [1, 2, 3, 4]
    history = mlflow_client(run_dir).get_metric_history(first["mlflow"], "reward/mean")
    assert [m.step for m in history] == [1, 2, 3, 4]
    fresh = run_once(run_dir, range(1, 2), resumed=False)  # a new run of the same name
    assert fresh["wandb"] != first["wandb"] and fresh["mlflow"] != first["mlflow"]


def test_the_recipe_key_decides_what_the_logger_starts(tmp_path, offline):
    from rlkit.runtime.run import make_logger

    def logger_for(trackers: str, tensorboard: bool) -> Path:
        runs = tmp_path / f"{trackers.strip('[]') or 'none'}_{tensorboard}"
        cfg = load_recipe(
            "recipes/quickstart.yaml",
            [f"logging.runs_dir={runs}", f"logging.trackers={trackers}"]
            + [f"logging.tensorboard={str(tensorboard).lower()}"],
        )
        make_logger(cfg, runs / "quickstart").close()
        return runs / "quickstart"

    none = logger_for("[]", False)
    assert not (none / "tb").exists() and not (none / "trackers.json").exists()
    assert (logger_for("[tensorboard]", False) / "tb").is_dir()  # listing it turns it on
    mlflow_only = logger_for("[mlflow]", False)
    assert list(json.loads((mlflow_only / "trackers.json").read_text())) == ["mlflow"]
    assert not (mlflow_only / "wandb").exists() and not (mlflow_only / "tb").exists()


def test_a_tracker_that_is_not_installed_is_a_config_error(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="logging.trackers.*wandb is not installed"):
        check_installed(["tensorboard", "wandb"])
    check_installed(["tensorboard"])  # the logger's own writer needs no extra


def test_a_missing_tracker_stops_the_run_before_anything_starts(monkeypatch):
    import importlib.util

    from rlkit.runtime.prepare import check_inputs

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    cfg = load_recipe("recipes/quickstart.yaml", ["logging.trackers=[mlflow]"])
    with pytest.raises(ConfigError, match="mlflow is not installed"):
        check_inputs(cfg)
