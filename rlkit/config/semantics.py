"""Cross-field checks of a recipe: what the dataclasses of rlkit.config.schema cannot say
by their types (positive sizes, divisible batches, keys one kind needs, `reward.models` entries).
Each check returns (key, message) pairs; rlkit.config.loader raises the first as a ConfigError.
"""

from __future__ import annotations

from rlkit.config.schema import RecipeConfig, RewardModelConfig


def check_semantics(cfg: RecipeConfig) -> list[tuple[str, str]]:
    """Cross-field checks; returns (key, message) pairs for every violation."""
    errs: list[tuple[str, str]] = []
    positive = {
        "rollout.prompts_per_step": cfg.rollout.prompts_per_step,
        "rollout.samples_per_prompt": cfg.rollout.samples_per_prompt,
        "rollout.max_tokens": cfg.rollout.max_tokens,
        "rollout.num_workers": cfg.rollout.num_workers,
        "trainer.world_size": cfg.trainer.world_size,
        "trainer.micro_batch_size": cfg.trainer.micro_batch_size,
        "trainer.total_steps": cfg.trainer.total_steps,
        "trainer.lr": cfg.trainer.lr,
    }
    errs += [(k, f"expected a positive number, got {v}") for k, v in positive.items() if v <= 0]
    if cfg.trainer.zero_stage not in (0, 1, 2, 3):
        errs.append(("trainer.zero_stage", f"expected 0, 1, 2 or 3, got {cfg.trainer.zero_stage}"))
    for key, v in (
        ("rollout.max_worker_restarts", cfg.rollout.max_worker_restarts),
        ("trainer.keep_last", cfg.trainer.keep_last),
        ("trainer.max_restarts", cfg.trainer.max_restarts),
        ("trainer.micro_batch_tokens", cfg.trainer.micro_batch_tokens),
        ("rollout.kv_block_size", cfg.rollout.kv_block_size),
    ):
        if v < 0:
            errs.append((key, f"expected an integer >= 0, got {v}"))
    if cfg.rollout.kv_block_size and cfg.rollout.engine != "vllm":
        errs.append(("rollout.kv_block_size", "only the vllm engine has KV blocks (set 0)"))
    if cfg.rollout.temperature < 0:
        errs.append(("rollout.temperature", f"expected >= 0, got {cfg.rollout.temperature}"))
    if not 0 < cfg.rollout.top_p <= 1:
        errs.append(("rollout.top_p", f"expected 0 < top_p <= 1, got {cfg.rollout.top_p}"))
    if cfg.async_.alpha < 0:
        errs.append(("async.alpha", f"expected an integer >= 0, got {cfg.async_.alpha}"))
    if cfg.trainer.world_size > 0 and cfg.samples_per_step % cfg.trainer.world_size:
        errs.append(
            (
                "trainer.world_size",
                f"prompts_per_step*samples_per_prompt = {cfg.samples_per_step} must be divisible "
                f"by world_size {cfg.trainer.world_size}",
            )
        )
    per_update = cfg.trainer.world_size * max(1, cfg.trainer.mini_batches)
    if cfg.trainer.mini_batches < 1 or cfg.trainer.ppo_epochs < 1:
        errs.append(("trainer.mini_batches", "mini_batches and ppo_epochs must be >= 1"))
    elif cfg.trainer.mini_batches > 1 and cfg.samples_per_step % per_update:
        errs.append(
            (
                "trainer.mini_batches",
                f"samples per step {cfg.samples_per_step} must be "
                f"divisible by world_size * mini_batches = {per_update}",
            )
        )
    if cfg.model.kind == "path" and not cfg.model.path:
        errs.append(("model.path", "expected an HF model folder when model.kind is 'path'"))
    if cfg.data.kind == "file" and not cfg.data.path:
        errs.append(("data.path", "expected a dataset file or hub name when data.kind is 'file'"))
    if cfg.eval.every > 0 and not cfg.eval.data:
        errs.append(("eval.data", "expected a suite data file when eval.every > 0"))
    # What an estimator needs (critics, their count) is declared by the estimator and checked
    # against the recipe by rlkit.runtime.prepare.check_plugins: the schema knows no estimator.
    if cfg.critic.num_critics < 0:
        errs.append(
            ("critic.num_critics", f"expected 0 (auto) or more, got {cfg.critic.num_critics}")
        )
    if cfg.critic.world_size < 1:
        errs.append(("critic.world_size", f"expected >= 1, got {cfg.critic.world_size}"))
    if not cfg.reward.fns:
        errs.append(("reward.fns", "expected at least one reward function"))
    errs += reward_model_errors(cfg.reward.models)
    return errs


def reward_model_errors(models: list[RewardModelConfig]) -> list[tuple[str, str]]:
    """`reward.models` entries: unique names, one model source, a template that shows the
    response, two verdict tokens, a regex that compiles, positive sizes."""
    import re

    errs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, m in enumerate(models):
        key = f"reward.models[{i}]"
        if not m.name or not m.name.isidentifier():
            errs.append((f"{key}.name", f"expected an identifier, got {m.name!r}"))
        elif m.name in seen:
            errs.append((f"{key}.name", f"{m.name!r} is used twice"))
        seen.add(m.name)
        if (m.path is None) == (m.tiny is None):
            errs.append((f"{key}.path", "set exactly one of path (an HF folder) and tiny"))
        if m.template and "{response}" not in m.template:
            errs.append((f"{key}.template", "expected a template containing {response}"))
        if len(m.verdict_tokens) != 2 or len(set(m.verdict_tokens)) != 2:
            errs.append((f"{key}.verdict_tokens", "expected two different tokens, positive first"))
        if m.kind == "judge" and m.verdict == "regex":
            try:
                re.compile(m.regex)
            except re.error as exc:
                errs.append((f"{key}.regex", f"does not compile: {exc}"))
        for name in ("max_batch", "timeout_s", "max_model_len", "max_tokens", "threads"):
            if getattr(m, name) <= 0:
                errs.append((f"{key}.{name}", f"expected > 0, got {getattr(m, name)}"))
        for name in ("cpus", "gpus", "batch_wait_s", "max_restarts", "cache_size"):
            if getattr(m, name) < 0:
                errs.append((f"{key}.{name}", f"expected >= 0, got {getattr(m, name)}"))
    return errs
