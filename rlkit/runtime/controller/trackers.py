"""Experiment trackers beside metrics.jsonl (`logging.trackers`; docs/trackers.md).

`wandb` and `mlflow` each get the resolved config when the run starts, every metric the logger
writes (training steps and evaluations), the curves when it closes, and, when the run resumes
from a checkpoint, the same tracker run again (its id is kept in `runs/<name>/trackers.json`).
`tensorboard` is the logger's own writer (`tb/`), so listing it is the same as
`logging.tensorboard: true`.

Each library is imported only when a recipe names it (optional extras: `pip install
rlkit[trackers]`) and configured the library's own way: W&B by `WANDB_MODE` (`offline` writes
`runs/<name>/wandb/`), `WANDB_PROJECT` (default `rlkit`) and its login; MLflow by
`MLFLOW_TRACKING_URI` (default: a file store `<logging.runs_dir>/mlruns`) and
`MLFLOW_EXPERIMENT_NAME` (default `rlkit`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

EXTERNAL = ("wandb", "mlflow")  # trackers this module starts
STATE = "trackers.json"  # tracker -> its run id, so a resumed run continues the same one


class Tracker(Protocol):
    run_id: str

    def log(self, metrics: dict[str, float], step: int) -> None: ...
    def log_image(self, path: Path, step: int) -> None: ...
    def close(self) -> None: ...


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The plottable values of a record: finite numbers (bools and strings left out)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if k != "step"
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
    }


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"trainer": {"lr": 1e-4}} -> {"trainer.lr": 1e-4} (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class WandbTracker:
    """A W&B run: config at start, metrics against the training step (`step` is the x axis,
    so a resumed run that logs a step again does not trip W&B's monotonic `_step`)."""

    def __init__(self, run_dir: Path, name: str, config: dict, run_id: str | None):
        import wandb

        self._wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "rlkit"),
            name=name,
            id=run_id,  # None: a new run
            resume="allow",
            dir=str(run_dir),
            settings=wandb.Settings(console="off"),  # leave the run's stdout alone
        )
        self.run.config.update(config, allow_val_change=True)  # resume may override keys
        self.run.define_metric("*", step_metric="step")
        self.run_id = self.run.id

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log({**metrics, "step": step})

    def log_image(self, path: Path, step: int) -> None:
        self.run.log({"curves": self._wandb.Image(str(path)), "step": step})

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    """An MLflow run through `MlflowClient` (no process-global active run): the config as
    params (on the first start only: MLflow params cannot change) and as `config.yaml`."""

    def __init__(self, runs_dir: Path, name: str, config: dict, run_id: str | None):
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"file:{(runs_dir / 'mlruns').resolve()}"
        if uri.startswith("file:"):
            # MLflow 3 refuses its file store unless told; it is what runs offline and bare
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        if run_id is not None:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            return
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "rlkit")
        found = self.client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(exp_id, run_name=name).info.run_id
        self._log_config(config)

    def _log_config(self, config: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        self.client.log_dict(self.run_id, config, "config.yaml")

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def log_image(self, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class TrackerSet:
    """The trackers of one run, fed by MetricsLogger: `log` per record, `close` at the end
    (draws the curves once and hands them to every tracker)."""

    def __init__(self, run_dir: Path, trackers: dict[str, Tracker]):
        self.run_dir = run_dir
        self.trackers = trackers
        self.step = 0

    def log(self, record: dict[str, Any]) -> None:
        self.step = int(record["step"])
        values = numeric(record)
        for t in self.trackers.values():
            t.log(values, self.step)

    def close(self) -> None:
        from rlkit.runtime.controller.plots import plot_run

        curves = plot_run(self.run_dir) if (self.run_dir / "metrics.jsonl").is_file() else None
        for t in self.trackers.values():
            if curves is not None:
                t.log_image(curves, self.step)
            t.close()


def check_installed(names: Iterable[str]) -> None:
    """Each external tracker named imports, before the run starts anything (ConfigError)."""
    import importlib.util

    from rlkit.config import ConfigError

    for n in names:
        if n in EXTERNAL and importlib.util.find_spec(n) is None:
            raise ConfigError(
                "logging.trackers", f"{n} is not installed (pip install 'rlkit[trackers]')"
            )


def start_trackers(
    names: Iterable[str], run_dir: Path, runs_dir: Path, config: dict, resumed: bool
) -> TrackerSet | None:
    """Start the external trackers in `names` (None when there are none).  A resumed run
    reopens the tracker runs recorded in trackers.json; a fresh one starts new runs."""
    wanted = [n for n in dict.fromkeys(names) if n in EXTERNAL]
    if not wanted:
        return None
    check_installed(wanted)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / STATE
    ids = json.loads(state_path.read_text()) if resumed and state_path.is_file() else {}
    name = str(config.get("name", run_dir.name))
    trackers: dict[str, Tracker] = {}
    for n in wanted:
        if n == "wandb":
            trackers[n] = WandbTracker(run_dir, name, config, ids.get(n))
        else:
            trackers[n] = MlflowTracker(runs_dir, name, config, ids.get(n))
    state_path.write_text(json.dumps({n: t.run_id for n, t in trackers.items()}) + "\n")
    return TrackerSet(run_dir, trackers)
