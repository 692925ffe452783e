"""After each step: the metrics record, checkpoints, evaluation during training, logging, and
the rollout dump (`runs/NAME/rollouts/step_N.jsonl`, rlkit.runtime.controller.rollout_dump)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlkit.runtime.controller.rollout_dump import DUMP_KEY, write_dump


class WorkerBusy:
    """Busy seconds the rollout workers report themselves (`RolloutWorker.busy`: the time their
    engine loop spent stepping since their previous report, which goes on between the
    controller's calls).  The loops ask for a report right behind every `run` call (`ask`) and
    read it when the call is back (`collect`); `take()` returns the busy seconds reported since
    the last `take`."""

    def __init__(self, get: Any = None) -> None:
        """`get`: ObjectRef -> value (`ray.get`; tests pass their own)."""
        self.pending: dict[Any, Any] = {}  # worker -> ObjectRef of `busy()`
        self.done_s = 0.0
        self.get = get

    def ask(self, key: Any, worker: Any) -> None:
        self.pending.setdefault(key, worker.busy.remote())

    def collect(self, key: Any) -> None:
        """Read the report asked for `key` (queued right behind its run call: no wait)."""
        import ray

        ref = self.pending.pop(key, None)
        if ref is None:
            return
        try:
            busy_s, _wall_s = (self.get or ray.get)(ref)
        except ray.exceptions.RayError:  # the worker died; its next run call reports it
            return
        self.done_s += busy_s

    def drop(self, key: Any) -> None:
        """Forget the report asked for a worker that died."""
        self.pending.pop(key, None)

    def take(self) -> float:
        busy, self.done_s = self.done_s, 0.0
        return busy


class StepRecorder:
    def __init__(
        self,
        cfg: Any,
        trainer: Any,
        logger: Any,
        checkpoint_dir: str | None,
        *,
        critic: Any = None,
        evaluator: dict | None = None,
        run_state: Callable[[], dict] | None = None,
    ):
        """`critic`: saved with the trainer when the run has critics; `evaluator`: the eval
        actor and what it runs ({"actor", "every", "suite", "data", ...}, rlkit.runtime.run);
        `run_state`: () -> the controller's state, written into every checkpoint."""
        self.cfg, self.trainer, self.logger = cfg, trainer, logger
        self.checkpoint_dir = checkpoint_dir
        self.keep_last = cfg.trainer.keep_last
        self.save_optimizer = cfg.trainer.save_optimizer
        self.save_metrics: dict[str, float] = {}  # ckpt/* of finished saves, for the next record
        self.pending = None  # the checkpoint being written (rlkit.runtime.checkpoints)
        self.inexact_resumes = 0  # resumes from weight-only checkpoints, over the run's life
        self.resume_note: dict[str, float] = {}  # for the first record after a resume
        self.trainer_restarts = 0  # trainer groups restarted in this process (trainer_restarts)
        self.saved: dict[int, str] = {}  # step -> checkpoint folder written this run
        self.critic, self.evaluator, self.run_state = critic, evaluator, run_state
        self.save_every = cfg.trainer.save_every
        self.pending_evals: list = []
        self.history: list[dict] = []
        self.t_last = time.perf_counter()
        self.window: deque[tuple[int, float]] = deque(maxlen=5)  # (generated tokens, seconds)
        # the rollout workers' own stepping time (the loops read it after each run call)
        self.rollout_clock = WorkerBusy()
        self.num_workers = max(1, cfg.rollout.num_workers)
        from rlkit.engines.deepspeed_engine import train_zero_stage

        a = cfg.algo
        self.names = {
            "algo/advantage": a.advantage,
            "algo/policy_loss": a.policy_loss,
            "algo/agg": a.agg,
            "engine/rollout": cfg.rollout.engine,
            "engine/train": f"deepspeed-zero{train_zero_stage(cfg)}",
        }

    def start_clock(self) -> None:
        """The first step's time counts from here (the components are ready)."""
        self.t_last = time.perf_counter()

    def mark_saved(self, step: int, folder: str) -> None:
        """`folder` holds step `step` already (the checkpoint a run resumed from)."""
        self.saved[step] = folder

    def mark_resumed(self, step: int, folder: str, exact: bool) -> None:
        """The run resumed from `folder` (step `step`); not `exact`: from a weight-only
        checkpoint, which the next record and every later checkpoint's state say."""
        self.mark_saved(step, folder)
        self.inexact_resumes += not exact
        self.resume_note = {
            "resume/exact": float(exact),
            "resume/inexact_resumes": float(self.inexact_resumes),
        }

    def state_dict(self) -> dict:
        """The throughput window (tokens and seconds of the last steps), so that the first
        steps after a resume report the rate over the same steps an unbroken run would; and
        how many resumes of the run were not exact."""
        return {"window": [list(w) for w in self.window], "inexact_resumes": self.inexact_resumes}

    def load_state_dict(self, state: dict) -> None:
        self.window.clear()
        self.window.extend((int(n), float(s)) for n, s in state["window"])
        self.inexact_resumes = int(state.get("inexact_resumes", 0))  # older checkpoints: none

    def record(self, step: int, metrics: dict, rollout: dict) -> dict:
        """Log step `step` (metrics of the train step + rollout counters), save, evaluate."""
        self.write_dump(step, metrics.pop(DUMP_KEY, None))
        now = time.perf_counter()
        step_s, self.t_last = now - self.t_last, now
        # Over the last few steps: under asynchrony one step may see no sample finish (the
        # workers wait for admission), which a per-step rate would show as 0.
        self.window.append((rollout.pop("tokens"), step_s))
        tokens, seconds = (sum(x) for x in zip(*self.window))
        rec = {
            **rollout.pop("reward_pool", {}),  # pool-wide counts; the batch's own stats win
            "step": step,
            "policy_version": step,
            **metrics,
            "time/step_s": step_s,
            "throughput/tokens_per_s": tokens / max(seconds, 1e-9),
            **self.busy_fracs(metrics, step_s),
            **rollout,
            **self.names,
        }
        rec.update(self.resume_note)
        if self.trainer_restarts:
            rec["trainer/restarts"] = float(self.trainer_restarts)
        self.resume_note = {}
        if self.pending is not None and self.pending.done():
            self.wait_saved()
        if self.checkpoint_dir and self.save_every and step % self.save_every == 0:
            self.save(step, background=True)  # after the previous save is on disk
        rec.update(self.save_metrics)  # ckpt/* of the saves finished since the last record
        self.save_metrics = {}
        self.maybe_eval(step)
        rec.update(self.collect_evals())
        self.logger.log(rec)
        self.history.append(rec)
        return rec

    def write_dump(self, step: int, text: str | None) -> None:
        """The step's trained samples (built on the training thread) beside the metrics the
        logger writes: `<run dir>/rollouts/step_<step>.jsonl`, atomically."""
        if text is None:
            return
        run_dir = getattr(self.logger, "run_dir", None)
        if run_dir is None:
            raise ValueError("rollout.dump needs a logger with a run_dir (runs/NAME)")
        write_dump(Path(run_dir) / "rollouts", step, text)

    def busy_fracs(self, metrics: dict, step_s: float) -> dict:
        """Share of the step's wall time each stage worked: rollout = mean over the workers of
        the time their engine stepped (as they report it; the part after a worker's last
        reading counts in the next step); train = credit + train step (`time/train_s`)."""
        wall = max(step_s, 1e-9)
        rollout = self.rollout_clock.take() / (wall * self.num_workers)
        return {
            "perf/rollout_busy_frac": min(1.0, rollout),
            "perf/train_busy_frac": min(1.0, metrics.get("time/train_s", 0.0) / wall),
        }

    def maybe_eval(self, step: int) -> None:
        """At eval steps, hand the new weights to the eval actor (runs concurrently)."""
        ev = self.evaluator
        if ev is None or step % ev["every"]:
            return
        blob = self.trainer.export_weights_async()
        ref = ev["actor"].evaluate.remote(
            blob, step, ev["suite"], ev["data"], ev["items"], ev["settings"]
        )
        self.pending_evals.append(ref)

    def collect_evals(self, wait: bool = False) -> dict:
        """Results of finished evaluations (all of them when `wait`), also to eval.jsonl."""
        import ray

        if not self.pending_evals:
            return {}
        n = len(self.pending_evals) if wait else 0
        ready, self.pending_evals = ray.wait(
            self.pending_evals, num_returns=max(n, 1), timeout=None if wait else 0
        )
        merged: dict = {}
        for result in ray.get(ready):
            self.logger.log_eval(result)
            merged.update({k: v for k, v in result.items() if k != "step"})
            merged["eval/step"] = result["step"]
        return merged

    def save(self, step: int, background: bool = False) -> str:
        """Checkpoint `step` once (the final save of a run that just saved that step reuses
        it) and keep the newest `trainer.keep_last` checkpoints (0 = all).  `background`: only
        the snapshot now, the files are written while training goes on (one save in flight:
        a previous one is waited for first); otherwise return once it is on disk.  A finished
        save's `ckpt/*` metrics go to the next record."""
        from rlkit.runtime.checkpoints import start_checkpoint

        if step not in self.saved:
            self.wait_saved()
            self.pending = start_checkpoint(
                self.checkpoint_dir,
                step,
                self.trainer,
                self.critic,
                self.run_state,
                optimizer=self.save_optimizer,
            )
            self.saved[step] = str(self.pending.out)
        if not background:
            self.wait_saved()
        return self.saved[step]

    def wait_saved(self) -> None:
        """Wait for the save in flight (its write error is raised here), then prune."""
        from rlkit.runtime.checkpoints import prune

        pending, self.pending = self.pending, None
        if pending is None:
            return
        pending.wait()
        self.save_metrics.update(pending.metrics())
        prune(self.checkpoint_dir, self.keep_last)
