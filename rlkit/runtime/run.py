"""`rlkit train`: build everything a recipe names, run the chosen loop, leave `runs/<name>/`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlkit.config import RecipeConfig
from rlkit.engines.rollout_protocol import SamplingConfig


def trainer_settings(cfg: RecipeConfig) -> dict:
    """The plain dict each trainer rank receives."""
    t, a = cfg.trainer, cfg.algo
    return {
        "seed": t.seed,
        "lr": t.lr,
        "weight_decay": t.weight_decay,
        "grad_clip": t.grad_clip,
        "zero_stage": t.zero_stage,
        "micro_batch_size": t.micro_batch_size,
        "mini_batches": t.mini_batches,
        "ppo_epochs": t.ppo_epochs,
        "samples_per_step": cfg.samples_per_step,
        "dtype": cfg.model.dtype,
        "max_len": cfg.rollout.max_tokens,
        "lora": {**cfg.model.lora.__dict__, "target_modules": list(cfg.model.lora.target_modules)},
        "algo": {
            "policy_loss": a.policy_loss,
            "loss_kw": dict(a.loss_kw),
            "agg": a.agg,
            "kl_beta": 0.0 if a.kl_in_reward else a.kl_beta,
            "kl_kind": a.kl_kind,
        },
    }


def spine_settings(cfg: RecipeConfig, eos_id: int):
    from rlkit.runtime.spine import SpineConfig

    r = cfg.rollout
    return SpineConfig(
        total_steps=cfg.trainer.total_steps,
        groups_per_step=r.prompts_per_step,
        samples_per_prompt=r.samples_per_prompt,
        alpha=cfg.async_.alpha,
        sampling=SamplingConfig(
            temperature=r.temperature,
            top_p=r.top_p,
            max_tokens=r.max_tokens,
            stop_token_ids=[eos_id],
        ),
        seed=cfg.seed,
        advantage=cfg.algo.advantage,
        advantage_kw=dict(cfg.algo.advantage_kw),
        kl_beta=cfg.algo.kl_beta,
        kl_kind=cfg.algo.kl_kind,
        kl_in_reward=cfg.algo.kl_in_reward,
        poll_s=cfg.async_.poll_s,
        save_every=cfg.trainer.save_every,
        engine_names=(r.engine, f"deepspeed-zero{cfg.trainer.zero_stage}"),
        weight_sync=cfg.trainer.weight_sync,
        gae_kw={"gamma": cfg.critic.gamma, "lam": cfg.critic.lam},
        dynamic_sampling=cfg.algo.dynamic_sampling,
        algo_names={
            "algo/advantage": cfg.algo.advantage,
            "algo/policy_loss": cfg.algo.policy_loss,
            "algo/agg": cfg.algo.agg,
        },
    )


@dataclass
class Components:
    """Everything a run starts; `stop` ends what this run owns."""

    workers: list
    trainer: Any
    rewards: Any
    reference: Any = None
    critic: Any = None
    evaluator: dict | None = None
    own_workers: bool = True
    own_rewards: bool = True

    def wait_ready(self, cfg: RecipeConfig) -> None:
        """Engines, DeepSpeed groups and reward workers up (before the clock starts)."""
        import ray

        ray.get([w.version.remote() for w in self.workers])
        self.trainer.wait_ready()
        if self.critic is not None:
            self.critic.wait_ready()
        if cfg.trainer.weight_sync == "nccl":
            self.trainer.init_nccl_sync(self.workers)
        self.rewards.wait_ready()

    def stop(self) -> None:
        import ray

        if self.own_rewards:
            self.rewards.close()
        self.trainer.shutdown()
        if self.critic is not None:
            self.critic.shutdown()
        actors = [self.reference, (self.evaluator or {}).get("actor")]
        actors += self.workers if self.own_workers else []
        for actor in actors:
            if actor is not None:
                ray.kill(actor)


def engine_settings(cfg: RecipeConfig) -> dict:
    r = cfg.rollout
    return {
        "max_model_len": r.max_model_len,
        "kv_cache_gib": r.kv_cache_gib,
        "seed": cfg.seed,
        "dtype": cfg.model.dtype,
    }


def start_components(cfg: RecipeConfig, model_path: str, workers, reward_pool) -> Components:
    """Rollout workers (or reset the given ones), trainer group, reference, critic, rewards."""
    import ray

    from rlkit.rewards import RewardPool
    from rlkit.runtime import cluster
    from rlkit.runtime.trainer_group import ReferenceModel, TrainerGroup

    r, env = cfg.rollout, cluster.actor_env()
    if workers is None:
        workers, own_workers = (
            cluster.start_rollout_workers(
                r.engine, model_path, r.num_workers, r.worker_cpus, engine_settings(cfg)
            ),
            True,
        )
    else:
        cluster.reset_workers(workers, model_path)
        own_workers = False
    trainer = TrainerGroup(
        model_path,
        trainer_settings(cfg),
        world=cfg.trainer.world_size,
        rank_cpus=cfg.trainer.rank_cpus,
        env=env,
    )
    reference = None
    if cfg.algo.kl_beta > 0:
        actor = ray.remote(num_cpus=0, runtime_env={"env_vars": env})(ReferenceModel)
        reference = actor.remote(model_path)
    own_rewards = reward_pool is None
    if own_rewards:
        rc = cfg.reward
        specs = [{"fn": f.fn, "weight": f.weight, "kwargs": dict(f.kwargs)} for f in rc.fns]
        reward_pool = RewardPool(
            specs,
            timeout_s=rc.timeout_s,
            fallback=rc.fallback,
            num_workers=rc.num_workers,
            mode=rc.mode,
        )
    return Components(
        workers,
        trainer,
        reward_pool,
        reference,
        critic=start_critic(cfg, model_path) if cfg.critic.enabled else None,
        evaluator=start_evaluator(cfg, model_path) if cfg.eval.every > 0 else None,
        own_workers=own_workers,
        own_rewards=own_rewards,
    )


def train(cfg: RecipeConfig, *, reward_pool=None, workers=None, log=print) -> Path:
    """Run a recipe end to end; returns the run directory.

    `workers` lets a caller (tests, sweeps) reuse running rollout workers: their weights are
    reset to the run's initial model and version 0 instead of starting new engines (~40 s)."""
    from transformers import AutoTokenizer

    from rlkit.runtime import cluster, prepare
    from rlkit.runtime.loops import run_async, run_sync
    from rlkit.runtime.metrics_logger import MetricsLogger
    from rlkit.runtime.spine import Spine

    prepare.check_inputs(cfg)
    run_dir = prepare.make_run_dir(cfg)
    model_path = prepare.prepare_model(cfg, run_dir, log=log)
    eos_id = AutoTokenizer.from_pretrained(model_path).eos_token_id
    cluster.init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.object_store_mb)
    log(
        f"[rlkit] starting {cfg.rollout.num_workers} {cfg.rollout.engine} rollout worker(s) "
        f"and a {cfg.trainer.world_size}-rank DeepSpeed ZeRO-{cfg.trainer.zero_stage} group"
    )
    parts = start_components(cfg, model_path, workers, reward_pool)
    logger = MetricsLogger(
        run_dir,
        tensorboard=cfg.logging.tensorboard,
        console=cfg.logging.console,
        total_steps=cfg.trainer.total_steps,
    )
    spine = Spine(
        spine_settings(cfg, eos_id),
        parts.workers,
        parts.trainer,
        prepare.prompt_stream(cfg, model_path),
        parts.rewards,
        logger,
        reference=parts.reference,
        critic=parts.critic,
        checkpoint_dir=str(run_dir / "checkpoints"),
    )
    spine.evaluator = parts.evaluator
    try:
        parts.wait_ready(cfg)
        spine.t_last = time.perf_counter()
        (run_sync if cfg.async_.mode == "sync" else run_async)(spine)
        spine.collect_evals(wait=True)
        final = spine.save(spine.step)
        log(f"[rlkit] done: {spine.step} steps; checkpoint {final}; metrics {run_dir}")
    finally:
        logger.close()
        parts.stop()
    from rlkit.runtime.plots import plot_run

    plot_run(run_dir)
    return run_dir


def start_evaluator(cfg: RecipeConfig, model_path: str) -> dict:
    """The eval actor and what it runs (see Spine.maybe_eval)."""
    import ray

    from rlkit.runtime.cluster import actor_env
    from rlkit.runtime.eval_worker import EvalWorker

    e = cfg.eval
    actor = ray.remote(num_cpus=0, runtime_env={"env_vars": actor_env()})(EvalWorker)
    return {
        "actor": actor.remote(e.engine, model_path, engine_settings(cfg)),
        "every": e.every,
        "suite": e.suite,
        "data": e.data,
        "items": e.items,
        "settings": dict(e.settings),
    }


def start_critic(cfg: RecipeConfig, model_path: str):
    """The critic group (PPO: one value model; AsyPPO: several) on its own DeepSpeed group."""
    from rlkit.runtime.cluster import actor_env
    from rlkit.runtime.critic_group import CriticGroup

    c = cfg.critic
    settings = {
        "seed": cfg.trainer.seed,
        "lr": c.lr,
        "grad_clip": cfg.trainer.grad_clip,
        "zero_stage": c.zero_stage,
        "micro_batch_size": c.micro_batch_size,
        "samples_per_critic": cfg.samples_per_step // c.num_critics,
        "num_critics": c.num_critics,
        "value_clip": c.value_clip,
        "dtype": cfg.model.dtype,
    }
    return CriticGroup(
        c.model_path or model_path,
        settings,
        world=c.world_size,
        rank_cpus=c.rank_cpus,
        env=actor_env(),
    )
