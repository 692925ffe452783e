"""A recipe checked against the code it names, before anything starts (prepare.check_plugins).

Three kinds of check, each failure one ConfigError naming the recipe key:
- names: every estimator, policy loss, loss term, token hook, credit stage and strategy loads;
- needs: what the estimator declares (rlkit.algos.declared) holds: critics on exactly when it
  reads critic values, enough of them, each critic's share of a step divisible as the critic
  group splits it;
- knobs: every `*_kw` dict fits the signature of the callable it goes to.  A callable taking
  `**kw` accepts anything, unless it declares where those knobs go (`forwards_kw_to(kw) ->
  callable`: the `policy` term to its loss, an estimator to the one it wraps).  Reward kwargs are
  checked the same way: the reward runner drops keywords a reward does not take, so a typo
  there would otherwise be silent.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from rlkit.agents.env import ENVIRONMENTS
from rlkit.algos import declared
from rlkit.algos.registry import ADVANTAGES, LOSS_TERMS, POLICY_LOSSES, TOKEN_HOOKS
from rlkit.config import ConfigError, RecipeConfig
from rlkit.credit.pipeline import CREDIT_STAGES, stage_names
from rlkit.runtime.controller.strategies import ROLLOUT_STRATEGIES

# Arguments the library itself passes (never a recipe's knob): not listed as accepted knobs.
SUPPLIED = frozenset(
    {"cfg", "ctx", "sampling", "seed", "rewards", "group_ids", "mask", "values", "logprobs",
     "old_logprobs", "advantages", "behavior_logprobs", "prompt", "completion", "context"}
)  # fmt: skip


def check_names(cfg: RecipeConfig) -> None:
    """Every algorithm, term, hook, stage and strategy the recipe names loads."""
    a = cfg.algo
    named = [
        ("algo.advantage", ADVANTAGES, a.advantage),
        ("algo.policy_loss", POLICY_LOSSES, a.policy_loss),
        ("rollout.strategy", ROLLOUT_STRATEGIES, cfg.rollout.strategy),
        *[("algo.loss_terms", LOSS_TERMS, t.get("term")) for t in a.loss_terms],
        *[("algo.token_hook", TOKEN_HOOKS, h) for h in [a.token_hook] if h],
        *[("algo.credit", CREDIT_STAGES, c) for c in a.credit],
        *[("rollout.env", ENVIRONMENTS, e) for e in [cfg.rollout.env] if e],
    ]
    for key, registry, name in named:
        try:
            registry[name]
        except (KeyError, ValueError) as exc:
            raise ConfigError(key, str(exc)) from None
    stage_names(cfg)
    check_env(cfg)


def check_env(cfg: RecipeConfig) -> None:
    """An environment exactly when the strategy runs one (`needs_context` strategies read
    `rollout.env`; the multi_turn strategy needs it)."""
    r = cfg.rollout
    wants = getattr(ROLLOUT_STRATEGIES[r.strategy], "needs_context", False)
    if r.env and not wants:
        raise ConfigError(
            "rollout.env", f"strategy {r.strategy!r} runs no environment (use multi_turn)"
        )
    if r.strategy == "multi_turn" and not r.env:
        raise ConfigError("rollout.env", "the multi_turn strategy needs an environment")
    check_demonstrations(cfg)


def check_demonstrations(cfg: RecipeConfig) -> None:
    """`sft.demo_rate` > 0: a warm start whose environment can show worked trajectories."""
    rate = cfg.sft.demo_rate
    if rate == 0:
        return
    if not 0 < rate <= 1:
        raise ConfigError("sft.demo_rate", f"must be in [0, 1], got {rate}")
    if cfg.sft.steps <= 0:
        raise ConfigError("sft.demo_rate", "needs a warm start (sft.steps > 0)")
    env = cfg.rollout.env
    if not env or not callable(getattr(ENVIRONMENTS[env], "demonstration", None)):
        raise ConfigError(
            "sft.demo_rate", f"needs rollout.env with a demonstration(row) method (got {env!r})"
        )


def check_needs(cfg: RecipeConfig) -> None:
    """Critics as the estimator declares them (`needs_critic`, `min_critics`, ...)."""
    name, critic = cfg.algo.advantage, cfg.critic
    if declared.needs_critic(cfg) != critic.enabled:
        value = ", ".join(
            n for n in ADVANTAGES.names() if getattr(ADVANTAGES[n], "needs_critic", 0)
        )
        raise ConfigError(
            "critic.enabled",
            f"the value advantages ({value}) and a critic go together: set critic.enabled: "
            f"true with one of them (and only then); algo.advantage is {name!r}",
        )
    if not critic.enabled:
        return
    m, least = declared.critic_count(cfg), declared.min_critics(cfg)
    share = cfg.samples_per_step // max(1, m)
    if m < max(1, least) or share % critic.world_size or cfg.rollout.samples_per_prompt % m:
        at_least = f" (>= {least} for {name})" if least > 1 else ""
        raise ConfigError(
            "critic.num_critics",
            f"expected >= 1 critics{at_least} dividing samples_per_prompt, each critic's share "
            f"divisible by critic.world_size; got {m}",
        )


def check_knobs(cfg: RecipeConfig) -> None:
    """Every `*_kw` knob dict against the signature of the callable it goes to."""
    a = cfg.algo
    targets: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = [
        ("algo.advantage_kw", a.advantage, ADVANTAGES[a.advantage], a.advantage_kw),
        ("rollout.strategy_kw", cfg.rollout.strategy, ROLLOUT_STRATEGIES[cfg.rollout.strategy],
         cfg.rollout.strategy_kw),
        *[("rollout.env_kw", e, ENVIRONMENTS[e], cfg.rollout.env_kw)
          for e in [cfg.rollout.env] if e],
    ]  # fmt: skip
    if not a.loss_terms:  # the default terms: algo.loss_kw goes to the policy term's loss
        policy = {"loss": a.policy_loss, **a.loss_kw}
        targets.append(("algo.loss_kw", a.policy_loss, LOSS_TERMS["policy"], policy))
    for i, t in enumerate(a.loss_terms):
        term = t.get("term")
        targets.append(
            (f"algo.loss_terms[{i}].kwargs", term, LOSS_TERMS[term], t.get("kwargs", {}))
        )
    if a.token_hook:
        targets.append(
            ("algo.token_hook_kw", a.token_hook, TOKEN_HOOKS[a.token_hook], a.token_hook_kw)
        )
    stages = stage_names(cfg)
    for stage, kw in a.credit_kw.items():
        if stage not in stages:
            raise ConfigError(
                "algo.credit_kw",
                f"{stage!r} is not a credit stage of this recipe (its stages: {', '.join(stages)})",
            )
        targets.append((f"algo.credit_kw.{stage}", stage, CREDIT_STAGES[stage], kw))
    targets += _reward_targets(cfg)
    for key, name, fn, kw in targets:
        try:
            unknown, names = unknown_knobs(fn, kw)
        except (KeyError, ValueError) as exc:  # a `forwards_kw_to` target that does not load
            raise ConfigError(key, str(exc)) from None
        if unknown:
            accepts = ", ".join(sorted(names - SUPPLIED)) or "no knobs"
            bad = ", ".join(map(repr, unknown))
            raise ConfigError(key, f"unknown knob(s) {bad} for {name!r}; it accepts: {accepts}")


def _reward_targets(cfg: RecipeConfig) -> list[tuple[str, str, Callable[..., Any], dict]]:
    """Reward functions that load here; one that does not is reported by the reward pool."""
    from rlkit.rewards.loader import load_reward

    out = []
    for i, f in enumerate(cfg.reward.fns):
        if not f.kwargs:
            continue
        try:
            fn = load_reward(f.fn)
        except Exception:  # noqa: BLE001 (its loader's own error comes when the pool starts)
            continue
        out.append((f"reward.fns[{i}].kwargs", f.fn, fn, f.kwargs))
    return out


def unknown_knobs(fn: Callable[..., Any], kw: dict[str, Any]) -> tuple[list[str], set[str]]:
    """(keys of `kw` that `fn` does not take, the names it takes), following `forwards_kw_to`
    through a `**kw` parameter; a plain `**kw` takes anything."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature (a builtin): trust it
        return [], set()
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    unknown = [k for k in kw if k not in names]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return unknown, names
    forward = getattr(fn, "forwards_kw_to", None)
    if forward is None or not unknown:
        return [], names
    rest, more = unknown_knobs(forward(kw), {k: kw[k] for k in unknown})
    return rest, names | more
