"""The controller: the jobs of a run, composed, for the two loops in rlkit.runtime.controller.loops.

    rollout scheduling    RolloutScheduler  (admission, finished requests, rewards, aborts)
    credit + training     TrainerDispatch   (credit pipeline and trainer step, off-thread)
    weight publishing     WeightPublisher   (object store or NCCL)
    record                StepRecorder      (metrics, checkpoints, eval, logging)
    request timeline      RequestTimeline   (per-request spans, train steps, publishes)
    reward audit          RewardAudit       (a few trained samples re-scored each step)
    worker failure        WorkerRestarts    (a dead rollout worker replaced, its groups re-issued)

The loops only decide *when* to call these; no algorithm is named here (credit stages, loss
terms and rollout strategies carry them).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from rlkit.config import RecipeConfig
from rlkit.runtime.controller.groups import Group, Prompt
from rlkit.runtime.controller.request_timeline import RequestTimeline
from rlkit.runtime.controller.reward_audit import RewardAudit
from rlkit.runtime.controller.rollout_scheduler import RolloutScheduler
from rlkit.runtime.controller.step_recorder import StepRecorder
from rlkit.runtime.controller.trainer_dispatch import TrainerDispatch
from rlkit.runtime.controller.weight_publisher import WeightPublisher, single_host
from rlkit.runtime.controller.worker_restarts import WorkerRestarts


class Spine:
    """The components of the controller, built from the recipe and the run's actors.  The loops
    call the components directly (`sp.rollout.new_group()`, `sp.recorder.history`); what is
    here composes several of them."""

    def __init__(
        self,
        cfg: RecipeConfig,
        workers: list,
        trainer: Any,
        prompts: Iterator[Prompt],
        rewards: Any,
        logger: Any,
        *,
        eos_id: int,
        reference: Any = None,
        critic: Any = None,
        checkpoint_dir: str | None = None,
        model_path: str | None = None,
        evaluator: dict | None = None,
        switch: Any = None,
        lease_signal: Any = None,
    ):
        """`reference` / `critic`: what the credit stages call; `evaluator`: the in-training
        eval actor (rlkit.runtime.run.start_evaluator); `switch`: the GPU hybrid engine's
        HybridSwitch; `lease_signal`: a LeaseSignal when the trainer borrows idle rollout
        cores (rlkit.runtime.placement.core_lease)."""
        from rlkit.credit import Services, build_pipeline
        from rlkit.credit.filters import group_filter
        from rlkit.runtime.controller.strategies import StrategyContext, make_strategy

        r = cfg.rollout
        self.cfg, self.workers, self.trainer, self.rewards = cfg, workers, trainer, rewards
        self.critic, self.lease_signal = critic, lease_signal
        self.total_steps, self.poll_s = cfg.trainer.total_steps, cfg.async_.poll_s
        self.groups_per_step = r.prompts_per_step
        strategy = make_strategy(
            r.strategy,
            sampling_config(cfg, eos_id),
            cfg.seed,
            r.strategy_kw,
            StrategyContext(cfg, model_path),
        )
        self.rollout = RolloutScheduler(
            strategy,
            prompts,
            rewards,
            num_workers=len(workers),
            alpha=cfg.async_.alpha,
            groups_per_step=r.prompts_per_step,
            samples_per_prompt=r.samples_per_prompt,
            accept=group_filter(cfg),
        )
        services = Services(reference, critic, WorkerProbe(workers), model_path=model_path)
        self.dispatch = TrainerDispatch(build_pipeline(cfg, services), trainer, switch, dump=r.dump)
        self.publisher = WeightPublisher(
            trainer, workers, cfg.trainer.weight_sync, via_file=single_host()
        )
        self.restarts = WorkerRestarts(
            workers, self.publisher, lambda: start_worker(cfg, model_path), r.max_worker_restarts
        )
        self.recorder = StepRecorder(
            cfg,
            trainer,
            logger,
            checkpoint_dir,
            critic=critic,
            evaluator=evaluator,
            run_state=self.state_dict,
        )
        self.audit = RewardAudit.for_pool(
            rewards, seed=cfg.seed, group_scope=strategy.reward_scope == "group"
        )
        self.timeline = RequestTimeline(getattr(logger, "run_dir", None))
        self.step = 0
        self._accounting_warned = False

    def replace_worker(self, index: int, error: BaseException) -> list:
        """Worker `index` died: start its replacement (current weights and version) and return
        the requests of its groups to send there (rlkit.runtime.controller.worker_restarts)."""
        self.restarts.replace(index, error)
        return self.rollout.reissue(index)

    # ---- training ----
    def start_train(self, groups: list[Group], stats: dict | None = None) -> Future:
        """Credit + train step in the background; the loop goes on generating."""
        stale = [self.step - g.start_version for g in groups]
        stats = {
            **(stats or {}),
            "staleness/mean": sum(stale) / len(stale),
            "staleness/max": max(stale),
        }
        if self.audit is not None:  # enqueued only: the re-scores run on the audit's thread
            self.audit.submit(groups)
        future = self.dispatch.submit(groups, stats)
        self.timeline.train_started(self.step + 1, future)
        return future

    def finish_train(self, future: Future) -> dict:
        """The step's metrics; bump the version, publish the weights, record."""
        metrics = future.result()
        self.step += 1
        self.timeline.train_done(self.step)
        t0 = time.time()
        self.publisher.publish(self.step)
        self.timeline.published(self.step, t0, time.time())
        self.rollout.worker_version = self.step
        counts = self.rollout.counts()
        rollout = {
            "reward_pool": self.rewards.metrics(),
            "tokens": self.rollout.step_tokens,
            "rollout/aborted_groups": counts["aborted"],
            "rollout/dropped_groups": counts["dropped"],
            "rollout/filtered_groups": counts["filtered"],
            "rollout/failed_groups": counts["failed"],
            "rollout/admitted_groups": counts["admitted"],
            "rollout/worker_restarts": self.restarts.count,
            "rollout/reissued_groups": self.rollout.reissued_groups,
            "rollout/accounting_ok": float(self.check_accounting(counts)),
            **self.rollout.strategy_metrics(),
            **(self.audit.take() if self.audit is not None else {}),
        }
        self.rollout.step_tokens = 0
        self.timeline.flush()
        return self.recorder.record(self.step, metrics, rollout)

    def check_accounting(self, counts: dict) -> bool:
        """Every admitted group is running, buffered or ended exactly once; none trained twice.
        A violation is a controller bug: reported (once) and logged, the run goes on."""
        ok = self.rollout.accounting_ok()
        if not ok and not self._accounting_warned:
            self._accounting_warned = True
            print(
                f"[rlkit] rollout accounting does not add up at step {self.step}: {counts}, "
                f"trained twice: {self.rollout.trained_twice}",
                file=sys.stderr,
            )
        return ok

    # ---- checkpoints (rlkit.runtime.resume) ----
    def state_dict(self) -> dict:
        """The controller's state after step `step`: each component's own (JSON), and the
        rollout queue under `queue` (plain values; rlkit.runtime.checkpoints writes it to
        `queue.pkl`)."""
        return {
            "step": self.step,
            "rollout": self.rollout.state_dict(),
            "restarts": self.restarts.state_dict(),
            "recorder": self.recorder.state_dict(),
            "queue": self.rollout.queue_state(),
        }

    def load_state_dict(self, state: dict) -> dict[str, float]:
        """Restore `state_dict`; returns the rollout queue's `resume/*` metrics."""
        self.step = state["step"]
        resumed = self.rollout.load_state_dict(state["rollout"], state.get("queue"))
        self.restarts.load_state_dict(state["restarts"])
        self.recorder.load_state_dict(state["recorder"])
        return resumed

    def close(self) -> None:
        self.dispatch.close()
        self.restarts.close()
        if self.audit is not None:
            self.audit.close()


class WorkerProbe:
    """Prefill-only scoring on the rollout workers (through each worker's request loop):
    sequences are spread round-robin; returns per sequence the logprobs from its start."""

    def __init__(self, workers: list):
        self.workers = workers

    def __call__(self, sequences: list[list[int]], starts: list[int]) -> list[list[float]]:
        import ray

        n = len(self.workers)
        parts = [list(range(w, len(sequences), n)) for w in range(n)]
        refs = [
            self.workers[w].score.remote([sequences[i] for i in idx], [starts[i] for i in idx])
            for w, idx in enumerate(parts)
            if idx
        ]
        out: list = [None] * len(sequences)
        for idx, res in zip([p for p in parts if p], ray.get(refs)):
            for i, lps in zip(idx, res):
                out[i] = lps
        return out


def start_worker(cfg: RecipeConfig, model_path: str | None):
    """One new rollout worker like those the run started (a dead one's replacement)."""
    from rlkit.runtime.placement.cluster import engine_settings, start_rollout_workers

    r = cfg.rollout
    return start_rollout_workers(r.engine, model_path, 1, r.worker_cpus, engine_settings(cfg))[0]


def sampling_config(cfg: RecipeConfig, eos_id: int):
    """The rollout section's sampling settings."""
    from rlkit.engines.rollout_protocol import SamplingConfig

    r = cfg.rollout
    return SamplingConfig(
        temperature=r.temperature,
        top_p=r.top_p,
        max_tokens=r.max_tokens,
        stop_token_ids=[eos_id],
    )
