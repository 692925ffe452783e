"""Start the recipe's `reward.models`: one actor and one gateway per named scorer.

    RewardModels.handles  -> RewardPool(models=...) -> ctx.models[name] in reward functions
    RewardModels.metrics  -> reward_model/<name>/* in every record (through the pool's metrics)

Placement (docs/rewards.md, "Model rewards"): `dedicated` reserves `cpus` Ray CPUs (and `gpus`)
for the actor; `colocated` reserves no CPU, sharing the cores of the rollout workers (on a CPU
box it borrows their threads as the evaluator does), with `gpus` a share of a GPU they hold.
Loopback only: the gateway listens on 127.0.0.1 with a random auth key, the actor is a Ray
actor of the run's (embedded, loopback) cluster.  A dead actor is replaced by the gateway at
most `max_restarts` times per run, its call sent again (docs/reliability.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlkit.config.schema import RewardModelConfig
from rlkit.rewards.models.gateway import BackendDied, ModelGateway


class RayBackend:
    """The gateway's backend: a `RewardModelActor`, started again after it died."""

    def __init__(self, cfg: RewardModelConfig, model_path: str, seed: int = 0):
        self.cfg, self.model_path, self.seed = cfg, model_path, seed
        self.actor = self._start()

    def _start(self) -> Any:
        import ray

        from rlkit.runtime.actors.reward_model import RewardModelActor
        from rlkit.runtime.placement.cluster import actor_env

        c = self.cfg
        cpus = c.cpus if c.placement == "dedicated" else 0
        env = {**actor_env(), "OMP_NUM_THREADS": str(max(1, c.threads))}
        if c.kind == "judge" and c.engine == "vllm" and not c.gpus and c.placement == "colocated":
            from rlkit.runtime.placement.threads import vllm_cpu_binding

            # vLLM-cpu binds its OpenMP threads at start: on the first rollout worker's cores
            env.setdefault("VLLM_CPU_OMP_THREADS_BIND", vllm_cpu_binding(max(1, c.threads), 0))
        remote = ray.remote(num_cpus=cpus, num_gpus=c.gpus, runtime_env={"env_vars": env})
        return remote(RewardModelActor).remote(c, self.model_path, self.seed)

    def wait_ready(self) -> int:
        import ray

        return ray.get(self.actor.ready.remote())

    def call(self, items: list[dict[str, Any]], timeout_s: float) -> list[float | None]:
        import ray
        from ray.exceptions import GetTimeoutError

        from rlkit.runtime.controller.worker_restarts import is_actor_death

        ref = self.actor.score.remote(items)
        try:
            return ray.get(ref, timeout=timeout_s)
        except GetTimeoutError as exc:
            raise TimeoutError(f"no answer within {timeout_s:g}s") from exc
        except Exception as exc:
            if is_actor_death(exc):
                raise BackendDied(type(exc).__name__) from exc
            raise

    def restart(self) -> None:
        self.close()
        self.actor = self._start()
        self.wait_ready()

    def close(self) -> None:
        import ray

        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:  # noqa: BLE001  already gone
            pass


class RewardModels:
    """The run's reward models: gateways (each with its actor) by name."""

    def __init__(self, gateways: dict[str, ModelGateway]):
        self.gateways = gateways

    @property
    def handles(self) -> dict:
        return {name: g.handle for name, g in self.gateways.items()}

    def metrics(self, reset: bool = True) -> dict[str, float]:
        out: dict[str, float] = {}
        for g in self.gateways.values():
            out.update(g.metrics(reset))
        return out

    def wait_ready(self) -> None:
        for g in self.gateways.values():
            g.backend.wait_ready()

    def close(self) -> None:
        for g in self.gateways.values():
            g.close()


def model_folder(cfg: RewardModelConfig, run_dir: Path) -> str:
    """The HF folder of one entry: its `path`, or a tiny model built under the run dir."""
    if cfg.path is not None:  # absolute: the actor's working directory may differ
        return str(Path(cfg.path).expanduser().resolve())
    from rlkit.rewards.models.tiny import build_tiny_reward_model

    assert cfg.tiny is not None
    return str(build_tiny_reward_model(run_dir / "reward_models" / cfg.name, cfg.kind, cfg.tiny))


def check_verdict_tokens(cfg: RewardModelConfig, folder: str, index: int) -> None:
    """A judge's verdict tokens are single tokens of its tokenizer (ConfigError otherwise)."""
    if cfg.kind != "judge" or cfg.verdict != "logprob":
        return
    from transformers import AutoTokenizer

    from rlkit.config import ConfigError
    from rlkit.rewards.models.scorers import verdict_token_id

    tok = AutoTokenizer.from_pretrained(folder)
    for t in cfg.verdict_tokens:
        try:
            verdict_token_id(tok, t, cfg.name)
        except ValueError as exc:
            raise ConfigError(f"reward.models[{index}].verdict_tokens", str(exc)) from None


def check_reward_models(models: list[RewardModelConfig]) -> None:
    """Before start: each `path` is a readable HF folder and a judge's verdict tokens are
    single tokens of its tokenizer (tiny models are checked once built)."""
    from rlkit.config import ConfigError
    from rlkit.engines.model_io import check_model_dir

    for i, m in enumerate(models):
        if m.path is None:
            continue
        try:
            check_model_dir(m.path)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"reward.models[{i}].path", str(exc)) from None
        check_verdict_tokens(m, m.path, i)


def start_reward_models(
    models: list[RewardModelConfig],
    run_dir: Path,
    seed: int = 0,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> RewardModels | None:
    """An actor and a gateway per entry (None when the recipe has none); Ray must be up."""
    if not models:
        return None
    gateways = {}
    for i, m in enumerate(models):
        folder = model_folder(m, run_dir)
        check_verdict_tokens(m, folder, i)
        gateways[m.name] = ModelGateway(
            m.name,
            RayBackend(m, folder, seed),
            max_batch=m.max_batch,
            batch_wait_s=m.batch_wait_s,
            timeout_s=m.timeout_s,
            fallback=m.fallback,
            max_restarts=m.max_restarts,
            cache_size=m.cache_size,
            log=log,
        )
    return RewardModels(gateways)
