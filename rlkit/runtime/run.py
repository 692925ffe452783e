"""`rlkit train`: build everything a recipe names, run the chosen loop, leave `runs/<name>/`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rlkit.config import RecipeConfig
from rlkit.runtime.trainer_restarts import RankGroupLost, dead_actor_name, lost_rank


@dataclass
class Components:
    """Everything a run starts; `stop` ends what this run owns."""

    workers: list
    trainer: Any
    rewards: Any
    critic: Any = None
    evaluator: dict | None = None
    own_workers: bool = True
    own_rewards: bool = True
    bundles: Any = None  # the GPU hybrid engine's placement group (placement.gpus)
    switch: Any = None  # its HybridSwitch (placement.hybrid)
    lease: Any = None  # the CoreLease actor when the trainer borrows idle rollout cores
    reward_models: Any = None  # rlkit.runtime.reward_models.RewardModels (reward.models)

    def wait_ready(self, cfg: RecipeConfig) -> None:
        """Engines, DeepSpeed groups (with the reference model) and reward workers up (before
        the clock starts)."""
        import ray

        ray.get([w.version.remote() for w in self.workers])
        self.trainer.wait_ready()
        if self.critic is not None:
            self.critic.wait_ready()
        if cfg.trainer.weight_sync == "nccl":
            self.trainer.init_nccl_sync(self.workers)
        self.rewards.wait_ready()
        if self.reward_models is not None:
            self.reward_models.wait_ready()

    def stop(self) -> None:
        import ray

        if self.own_rewards:
            self.rewards.close()
        if self.reward_models is not None:
            self.reward_models.close()
        self.trainer.shutdown()
        if self.critic is not None:
            self.critic.shutdown()
        actors = [(self.evaluator or {}).get("actor"), self.lease]
        actors += self.workers if self.own_workers else []
        for actor in actors:
            if actor is not None:
                ray.kill(actor)
        if self.bundles is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.bundles)


def start_components(
    cfg: RecipeConfig, model_path: str, workers, reward_pool, reward_models=None
) -> Components:
    """Rollout workers (or reset the given ones), trainer group (holding the reference model
    when the recipe has KL), critic, evaluator, rewards (with `reward_models`, the scorers
    their functions call), the core lease."""
    from rlkit.runtime.placement import cluster
    from rlkit.runtime.placement.core_lease import start_lease
    from rlkit.runtime.placement.gpus import cluster_gpus, gpu_shares, hybrid_bundles
    from rlkit.runtime.placement.hybrid import make_switch

    n_gpus = cluster_gpus()
    gpus = gpu_shares(cfg, n_gpus)
    bundles = hybrid_bundles(cfg) if gpus.hybrid else None
    own_workers = workers is None
    if own_workers:
        workers = start_workers(cfg, model_path, gpus, bundles)
    else:
        cluster.reset_workers(workers, model_path)
    lease = start_lease(cfg)
    trainer = start_trainer(cfg, model_path, gpus, bundles, lease, n_gpus)
    return Components(
        workers,
        trainer,
        reward_pool if reward_pool is not None else start_rewards(cfg, reward_models),
        critic=start_critic(cfg, model_path, trainer, gpus.critic) if cfg.critic.enabled else None,
        evaluator=start_evaluator(cfg, model_path, gpus.evaluator) if cfg.eval.every > 0 else None,
        own_workers=own_workers,
        own_rewards=reward_pool is None,
        bundles=bundles,
        switch=make_switch(workers, trainer, bundles),
        lease=lease,
        reward_models=reward_models,
    )


def start_trainer(cfg: RecipeConfig, model_path: str, gpus, bundles, lease, n_gpus: int):
    """The trainer group (with the reference model when the recipe has KL) on its share of the
    resources: at the start of a run, and again after a trainer restart."""
    from rlkit.runtime.actors.trainer_group import TrainerGroup
    from rlkit.runtime.placement import cluster
    from rlkit.runtime.placement.reference import reference_plan

    return TrainerGroup(
        model_path,
        cfg,
        world=cfg.trainer.world_size,
        rank_cpus=cfg.trainer.rank_cpus,
        env=cluster.actor_env(),
        num_gpus=gpus.rank,
        bundles=bundles,
        lease=lease,
        reference=reference_plan(cfg, n_gpus),
    )


def start_workers(cfg: RecipeConfig, model_path: str, gpus: Any, bundles: Any) -> list:
    """The run's rollout workers: their threads (CPU placement) or GPU shares (`gpus`, worker i
    in bundle i of the hybrid engine's `bundles`)."""
    from rlkit.runtime.placement import cluster, threads

    r = cfg.rollout
    colocated = threads.resolve(cfg) == "colocated"
    return cluster.start_rollout_workers(
        r.engine,
        model_path,
        r.num_workers,
        r.worker_cpus,
        cluster.engine_settings(cfg) | cluster.sleep_setting(cfg, gpus.hybrid),
        threads=threads.rollout_threads(cfg),
        vllm_bind=colocated and not cfg.ray.address,
        num_gpus=gpus.worker,
        bundles=bundles,
    )


def start_rewards(cfg: RecipeConfig, models: Any = None) -> Any:
    """The reward pool of the recipe's `reward` section (`models`: its reward models)."""
    from rlkit.rewards import RewardPool

    rc = cfg.reward
    specs = [{"fn": f.fn, "weight": f.weight, "kwargs": dict(f.kwargs)} for f in rc.fns]
    return RewardPool(
        specs,
        timeout_s=rc.timeout_s,
        fallback=rc.fallback,
        num_workers=rc.num_workers,
        mode=rc.mode,
        models=models,
    )


def train(cfg: RecipeConfig, *, reward_pool=None, workers=None, log=print, resume=None) -> Path:
    """Run a recipe end to end; returns the run directory.

    `workers` lets a caller (tests, sweeps) reuse running rollout workers: their weights are
    reset to the run's initial model and version 0 instead of starting new engines (~40 s).
    `resume` (a run folder) continues from its newest checkpoint (rlkit.runtime.resume)."""
    from transformers import AutoTokenizer

    from rlkit.engines.deepspeed_engine import train_zero_stage
    from rlkit.runtime import prepare
    from rlkit.runtime.checkpoints import step_of
    from rlkit.runtime.resume import resume_point, trim_records

    prepare.check_inputs(cfg)
    cfg = prepare.absolute_plugin_paths(cfg)
    checkpoint = resume_point(cfg, resume)
    step0 = step_of(checkpoint) if checkpoint else 0
    run_dir = prepare.make_run_dir(cfg, Path(resume) if resume else None, checkpoint is not None)
    if checkpoint is not None:
        trim_records(run_dir, step0)
    model_path = prepare.prepare_model(cfg, run_dir, log=log)
    eos_id = AutoTokenizer.from_pretrained(model_path).eos_token_id
    start_ray(cfg)
    log(
        f"[rlkit] starting {cfg.rollout.num_workers} {cfg.rollout.engine} rollout worker(s) "
        f"and a {cfg.trainer.world_size}-rank DeepSpeed ZeRO-{train_zero_stage(cfg)} group"
    )
    from rlkit.runtime.reward_models import start_reward_models

    models = None  # a caller's reward pool comes with its own (RewardPool(models=...))
    if reward_pool is None:
        models = start_reward_models(cfg.reward.models, run_dir, cfg.seed)
    parts = start_components(cfg, model_path, workers, reward_pool, models)
    try:  # a dead trainer rank: trainer.max_restarts (rlkit.runtime.trainer_restarts)
        run_attempts(cfg, parts, checkpoint, run_dir, model_path, eos_id, log)
    finally:
        parts.stop()
    from rlkit.runtime.controller.plots import plot_run

    plot_run(run_dir)
    return run_dir


def make_spine(cfg: RecipeConfig, parts: Components, logger, model_path: str, eos_id: int, run_dir):
    """The controller over the run's components (rlkit.runtime.controller.spine)."""
    from rlkit.runtime import prepare
    from rlkit.runtime.controller.spine import Spine
    from rlkit.runtime.placement.core_lease import LeaseSignal

    return Spine(
        cfg,
        parts.workers,
        parts.trainer,
        prepare.prompt_stream(cfg, model_path),
        parts.rewards,
        logger,
        eos_id=eos_id,
        reference=parts.trainer.reference,
        critic=parts.critic,
        checkpoint_dir=str(run_dir / "checkpoints"),
        model_path=model_path,
        evaluator=parts.evaluator,
        switch=parts.switch,
        lease_signal=LeaseSignal(parts.lease) if parts.lease is not None else None,
    )


def run_attempts(
    cfg: RecipeConfig,
    parts: Components,
    checkpoint: Path | None,
    run_dir: Path,
    model_path: str,
    eos_id: int,
    log,
) -> None:
    """A controller over `parts` from `checkpoint` (run_spine); when a trainer or critic rank
    dies and `trainer.max_restarts` allows, new groups, and on from the newest checkpoint
    (rlkit.runtime.trainer_restarts)."""
    from rlkit.runtime import trainer_restarts as tr
    from rlkit.runtime.checkpoints import latest_resumable, step_of
    from rlkit.runtime.resume import trim_records

    restarts = 0
    while True:
        step0 = step_of(checkpoint) if checkpoint else 0
        logger = make_logger(cfg, run_dir, purge_step=step0 + 1 if checkpoint else None)
        spine = make_spine(cfg, parts, logger, model_path, eos_id, run_dir)
        spine.recorder.trainer_restarts = restarts
        try:
            return run_spine(cfg, parts, spine, checkpoint, run_dir, log)
        except RankGroupLost as exc:
            if not tr.may_restart(cfg, exc, restarts):
                raise
            restarts, what = restarts + 1, exc.what
        finally:
            spine.close()
            logger.close()
        tr.stop_trainer(parts)  # first: a survivor stuck in a collective answers nothing
        tr.finish_pending_save(spine)
        checkpoint = latest_resumable(run_dir / "checkpoints")
        log(
            f"[rlkit] {what} died at step {spine.step + 1}; restart {restarts} of at most "
            f"{cfg.trainer.max_restarts}: a new trainer group, on from "
            f"{checkpoint.name if checkpoint else 'step 0 (no checkpoint yet)'}"
        )
        tr.start_trainer_side(cfg, parts, model_path, partial(trainer_side, cfg, model_path, parts))
        trim_records(run_dir, step_of(checkpoint) if checkpoint else 0)


def trainer_side(cfg: RecipeConfig, model_path: str, parts: Components, gpus, n_gpus: int):
    """A new trainer group and critic group (or None) on `parts`' resources."""
    trainer = start_trainer(cfg, model_path, gpus, parts.bundles, parts.lease, n_gpus)
    critic = start_critic(cfg, model_path, trainer, gpus.critic) if cfg.critic.enabled else None
    return trainer, critic


def run_spine(cfg: RecipeConfig, parts: Components, spine, checkpoint, run_dir: Path, log):
    """Wait for the components, resume from `checkpoint` (if any), run the loop, save last."""
    from rlkit.runtime.resume import resume_from

    parts.wait_ready(cfg)
    if checkpoint is not None:
        resume_from(spine, checkpoint, log=log)
    if parts.switch is not None:  # the workers generate first: trainer states to host
        parts.switch.to_rollout()
    spine.recorder.start_clock()
    run_loop(cfg, spine, run_dir)
    spine.recorder.collect_evals(wait=True)
    final = spine.recorder.save(spine.step)
    log(f"[rlkit] done: {spine.step} steps; checkpoint {final}; metrics {run_dir}")


def run_loop(cfg: RecipeConfig, spine, run_dir: Path) -> None:
    """The recipe's loop; a dead trainer or critic process becomes RankGroupLost."""
    from rlkit.runtime.checkpoints import latest_resumable
    from rlkit.runtime.controller.worker_restarts import is_actor_death

    try:
        loop_for(cfg)(spine)
    except Exception as exc:
        what = dead_actor_name(exc) if is_actor_death(exc) else lost_rank(spine)
        if what is None:
            raise
        ckpt = latest_resumable(run_dir / "checkpoints")
        where = (
            f"resume from {ckpt.name} with: rlkit train {run_dir}/config.yaml --resume {run_dir}"
            if ckpt
            else "no resumable checkpoint yet (set trainer.save_every)"
        )
        raise RankGroupLost(f"{what} died at step {spine.step + 1}; {where}", what) from exc


def start_ray(cfg: RecipeConfig) -> None:
    """Join `ray.address`, or start the embedded loopback cluster of the `ray` section."""
    from rlkit.runtime.placement import cluster

    cluster.init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.object_store_mb)


def make_logger(cfg: RecipeConfig, run_dir: Path, purge_step: int | None = None):
    from rlkit.config import to_dict
    from rlkit.runtime.controller.metrics_logger import MetricsLogger
    from rlkit.runtime.controller.trackers import start_trackers

    lg = cfg.logging
    trackers = start_trackers(
        lg.trackers, run_dir, Path(lg.runs_dir), to_dict(cfg), resumed=purge_step is not None
    )
    return MetricsLogger(
        run_dir,
        tensorboard=lg.tensorboard or "tensorboard" in lg.trackers,
        console=lg.console,
        total_steps=cfg.trainer.total_steps,
        purge_step=purge_step,
        trackers=trackers,
    )


def loop_for(cfg: RecipeConfig):
    """`async.mode: sync` -> the synchronous loop; otherwise the ROLL Flash controller."""
    from rlkit.runtime.controller.loops import run_async, run_sync

    return run_sync if cfg.async_.mode == "sync" else run_async


def start_evaluator(cfg: RecipeConfig, model_path: str, num_gpus: float = 0.0) -> dict:
    """The eval actor (`num_gpus`: its GPUs on a GPU cluster) and what it runs (see
    StepRecorder.maybe_eval)."""
    import ray

    from rlkit.runtime.actors.eval_worker import EvalWorker
    from rlkit.runtime.placement import cluster

    e = cfg.eval
    env = {"env_vars": cluster.actor_env()}
    actor = ray.remote(num_cpus=0, num_gpus=num_gpus, runtime_env=env)(EvalWorker)
    return {
        "actor": actor.remote(e.engine, model_path, cluster.engine_settings(cfg)),
        "every": e.every,
        "suite": e.suite,
        "data": e.data,
        "items": e.items,
        "settings": dict(e.settings),
    }


def start_critic(cfg: RecipeConfig, model_path: str, trainer: Any = None, num_gpus: float = 0.0):
    """The critic group (PPO: one value model; AsyPPO: several mini-critics) as its own
    DeepSpeed group; its backbone from rlkit.runtime.actors.critic_group.critic_model_path.
    `critic.placement: colocated` reserves no CPUs and pins critic rank r to trainer rank r's
    node (when `trainer` is given; otherwise to the driver's node)."""
    import ray

    from rlkit.runtime.actors.critic_group import CriticGroup, actor_nodes, critic_model_path
    from rlkit.runtime.placement.cluster import actor_env

    c = cfg.critic
    nodes, cpus = None, c.rank_cpus
    if c.placement == "colocated":
        cpus = 0
        ranks = getattr(trainer, "ranks", None)
        nodes = actor_nodes(ranks) if ranks else [ray.get_runtime_context().get_node_id()]
    return CriticGroup(
        critic_model_path(cfg, model_path),
        cfg,
        world=c.world_size,
        rank_cpus=cpus,
        env=actor_env(),
        nodes=nodes,
        num_gpus=num_gpus,
    )
