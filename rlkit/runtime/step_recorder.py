"""After each step: the metrics record, checkpoints, evaluation during training, logging."""

from __future__ import annotations

import time
from collections import deque
from typing import Any


class BusyClock:
    """Busy time of a few workers (keys): `start(k)`/`stop(k)` bracket a busy interval;
    `take()` returns the busy seconds since the last `take`, intervals still open included."""

    def __init__(self) -> None:
        self.since: dict[Any, float] = {}
        self.done_s = 0.0

    def start(self, key: Any) -> None:
        self.since.setdefault(key, time.perf_counter())

    def stop(self, key: Any) -> None:
        t0 = self.since.pop(key, None)
        if t0 is not None:
            self.done_s += time.perf_counter() - t0

    def take(self) -> float:
        now = time.perf_counter()
        busy = self.done_s + sum(now - t0 for t0 in self.since.values())
        self.since = dict.fromkeys(self.since, now)
        self.done_s = 0.0
        return busy


class StepRecorder:
    def __init__(self, cfg: Any, trainer: Any, logger: Any, checkpoint_dir: str | None):
        self.cfg, self.trainer, self.logger = cfg, trainer, logger
        self.checkpoint_dir = checkpoint_dir
        self.keep_last = cfg.trainer.keep_last
        self.saved: dict[int, str] = {}  # step -> checkpoint folder written this run
        self.critic: Any = None  # saved with the trainer when the run has critics
        self.run_state: Any = None  # () -> the controller's state (rlkit.runtime.resume)
        self.save_every = cfg.trainer.save_every
        self.evaluator: dict | None = None  # {"actor", "every", "suite", "data", ...}
        self.pending_evals: list = []
        self.history: list[dict] = []
        self.t_last = time.perf_counter()
        self.window: deque[tuple[int, float]] = deque(maxlen=5)  # (generated tokens, seconds)
        # rollout workers with a `run` call in flight (the loops bracket each call)
        self.rollout_clock = BusyClock()
        self.num_workers = max(1, cfg.rollout.num_workers)
        a = cfg.algo
        self.names = {
            "algo/advantage": a.advantage,
            "algo/policy_loss": a.policy_loss,
            "algo/agg": a.agg,
            "engine/rollout": cfg.rollout.engine,
            "engine/train": f"deepspeed-zero{cfg.trainer.zero_stage}",
        }

    def record(self, step: int, metrics: dict, rollout: dict) -> dict:
        """Log step `step` (metrics of the train step + rollout counters), save, evaluate."""
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
        if self.checkpoint_dir and self.save_every and step % self.save_every == 0:
            self.save(step)
        self.maybe_eval(step)
        rec.update(self.collect_evals())
        self.logger.log(rec)
        self.history.append(rec)
        return rec

    def busy_fracs(self, metrics: dict, step_s: float) -> dict:
        """Share of the step's wall time each stage worked: rollout = mean over the workers of
        the time a `run` call was in flight; train = credit + train step (`time/train_s`)."""
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

    def save(self, step: int) -> str:
        """Checkpoint `step` once (the final save of a run that just saved that step reuses
        it), then keep the newest `trainer.keep_last` checkpoints (0 = all)."""
        from rlkit.runtime.checkpoints import prune, write_checkpoint

        if step not in self.saved:
            out = write_checkpoint(
                self.checkpoint_dir, step, self.trainer, self.critic, self.run_state
            )
            self.saved[step] = str(out)
            prune(self.checkpoint_dir, self.keep_last)
        return self.saved[step]
