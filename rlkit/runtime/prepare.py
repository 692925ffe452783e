"""Everything a run needs before the cluster starts: run dir, model folder, prompt stream."""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from rlkit.config import RecipeConfig, to_dict
from rlkit.runtime.controller.groups import Prompt


def check_inputs(cfg: RecipeConfig) -> None:
    """Files the recipe names must exist before anything is created or started."""
    from rlkit.config import ConfigError

    if cfg.model.kind == "path":
        from rlkit.engines.model_io import check_model_dir

        try:  # config, weights readable, tokenizer fits the model
            check_model_dir(cfg.model.path)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError("model.path", str(exc)) from None
    looks_local = cfg.data.path and (
        cfg.data.path.endswith((".jsonl", ".json", ".parquet"))
        or cfg.data.path.startswith((".", "/"))
    )
    if cfg.data.kind == "file" and looks_local and not Path(cfg.data.path).exists():
        raise ConfigError("data.path", f"file not found: {cfg.data.path}")
    if cfg.eval.every > 0 and not Path(cfg.eval.data).exists():
        raise ConfigError("eval.data", f"file not found: {cfg.eval.data}")
    from rlkit.runtime.controller.trackers import check_installed

    check_installed(cfg.logging.trackers)  # wandb / mlflow importable (optional extras)
    from rlkit.runtime.reward_models import check_reward_models

    check_reward_models(cfg.reward.models)  # folders readable, verdict tokens single tokens
    check_plugins(cfg)
    from rlkit.runtime.placement.cpu_budget import check_cpu_budget

    check_cpu_budget(cfg)  # every actor's CPU reservation fits the embedded cluster
    if cfg.data.kind == "file" and looks_local:
        load_rows(cfg)  # every row readable, with its prompt field, before anything starts


def check_plugins(cfg: RecipeConfig) -> None:
    """Every algorithm, term, hook, stage and strategy the recipe names loads, what its estimator
    declares it needs holds, and every `*_kw` knob fits the callable it goes to (one line naming
    the key otherwise; rlkit.runtime.recipe_checks), before anything starts."""
    from rlkit.config import ConfigError
    from rlkit.runtime.recipe_checks import check_knobs, check_names, check_needs

    check_names(cfg)
    check_needs(cfg)
    check_knobs(cfg)
    a = cfg.algo
    if a.token_hook:  # knob values too are checked by building it (cheap: no model involved)
        from rlkit.algos.registry import TOKEN_HOOKS

        try:
            TOKEN_HOOKS[a.token_hook](**a.token_hook_kw)
        except (TypeError, ValueError) as exc:
            raise ConfigError("algo.token_hook_kw", str(exc)) from None
    try:
        from rlkit.engines.rollout_protocol import SamplingConfig
        from rlkit.runtime.controller.strategies import make_strategy

        make_strategy(cfg.rollout.strategy, SamplingConfig(), cfg.seed, cfg.rollout.strategy_kw)
    except (TypeError, ValueError) as exc:
        raise ConfigError("rollout.strategy_kw", str(exc).split(": ", 1)[-1]) from None


def absolute_plugin_paths(cfg: RecipeConfig) -> RecipeConfig:
    """User code named as `path/to/file.py:name` is resolved against the driver's working dir,
    so actors (whose working dir may differ) load the same file."""
    import dataclasses
    import os

    def fix(spec):
        if not isinstance(spec, str) or ":" not in spec:
            return spec
        target, attr = spec.rsplit(":", 1)
        if target.endswith(".py") or "/" in target:
            return f"{os.path.abspath(os.path.expanduser(target))}:{attr}"
        return spec

    a, r = cfg.algo, cfg.rollout
    algo = dataclasses.replace(
        a,
        advantage=fix(a.advantage),
        policy_loss=fix(a.policy_loss),
        token_hook=fix(a.token_hook),
        credit=[fix(c) for c in a.credit],
        credit_kw={fix(k): v for k, v in a.credit_kw.items()},
        loss_terms=[{**t, "term": fix(t.get("term"))} for t in a.loss_terms],
    )
    rollout = dataclasses.replace(r, strategy=fix(r.strategy), env=fix(r.env))
    return dataclasses.replace(cfg, algo=algo, rollout=rollout)


def run_dir_of(cfg: RecipeConfig) -> Path:
    return Path(cfg.logging.runs_dir) / cfg.name


def make_run_dir(cfg: RecipeConfig, run_dir: Path | None = None, resumed: bool = False) -> Path:
    """`runs/<name>/` (or `run_dir`) with the resolved config; metrics of an earlier run of
    that name go, unless this run resumes it (rlkit.runtime.resume trims them instead)."""
    run_dir = run_dir or run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resumed:
        for stale in ("metrics.jsonl", "eval.jsonl"):
            (run_dir / stale).unlink(missing_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return run_dir


def prepare_model(cfg: RecipeConfig, run_dir: Path, log=print) -> str:
    """The HF folder the run starts from: given, built tiny (+SFT), or SmolLM2 from its wheel."""
    from rlkit.engines.model_io import check_model_dir

    m = cfg.model
    _forget_stale_preparation(cfg, run_dir)
    if m.kind == "path":
        base = check_model_dir(m.path)
    elif m.kind == "smollm2":
        from rlkit.data.smollm2 import smollm2_folder

        base = smollm2_folder(m.path)
    else:
        from rlkit.data.tiny_model import build_tiny_model

        base = run_dir / "base_model"
        if not (base / "config.json").is_file():
            t = m.tiny
            build_tiny_model(
                base,
                hidden_size=t.hidden_size,
                num_layers=t.num_layers,
                num_heads=t.num_heads,
                intermediate_size=t.intermediate_size,
                seed=t.seed,
            )
    if cfg.sft.steps <= 0:
        return str(base)
    out = run_dir / "sft_model"
    if (out / "config.json").is_file():
        log(f"[rlkit] reusing SFT warm-start {out}")
        return str(out)
    from rlkit.data.arithmetic import make_arithmetic_dataset, with_sft_targets
    from rlkit.data.sft import sft_warm_start

    if cfg.data.kind == "file":
        rows = load_rows(cfg)
    else:  # fresh problems, not the RL prompts (another seed)
        rows = make_arithmetic_dataset(
            cfg.sft.num_rows,
            seed=cfg.data.seed + 1,
            max_operand=cfg.data.max_operand,
            ops=cfg.data.ops,
        )
    if not all("target" in r for r in rows):  # rows with their own SFT target keep it (ReRe)
        rows = with_sft_targets(rows, unboxed_rate=cfg.sft.unboxed_rate, seed=cfg.seed)
    if cfg.sft.demo_rate > 0:
        rows = _with_env_demonstrations(cfg, base, rows, log)
    log(f"[rlkit] SFT warm-start: {cfg.sft.steps} steps")
    sft_warm_start(
        base,
        rows,
        steps=cfg.sft.steps,
        lr=cfg.sft.lr,
        batch_size=cfg.sft.batch_size,
        seed=cfg.seed,
        out_dir=out,
        log=log,
    )
    return str(out)


def _with_env_demonstrations(cfg: RecipeConfig, base: Path | str, rows: list, log) -> list:
    """A `sft.demo_rate` share of `rows` taught with the environment's worked trajectories."""
    from transformers import AutoTokenizer

    from rlkit.agents.demos import with_demonstrations
    from rlkit.agents.env import load_env
    from rlkit.agents.turns import TurnEncoder

    tok = AutoTokenizer.from_pretrained(str(base))
    encoder = TurnEncoder(tok, cfg.model.chat_template)
    env_cls = load_env(cfg.rollout.env)
    rows, reward = with_demonstrations(
        rows, env_cls, cfg.rollout.env_kw, encoder, tok.eos_token_id,
        rate=cfg.sft.demo_rate, seed=cfg.seed,
    )  # fmt: skip
    shown = sum("target_ids" in r for r in rows)
    log(f"[rlkit] SFT: {shown} of {len(rows)} rows are {cfg.rollout.env} demonstrations "
        f"(mean reward {reward:.2f})")  # fmt: skip
    return rows


def _forget_stale_preparation(cfg: RecipeConfig, run_dir: Path) -> None:
    """Built/SFT models under the run dir are reused only if made from the same settings."""
    import json
    import shutil

    parts = {k: to_dict(getattr(cfg, k)) for k in ("model", "data", "sft", "seed")}
    if cfg.sft.demo_rate > 0:  # the demonstrations come from the environment
        parts["env"] = [cfg.rollout.env, cfg.rollout.env_kw]
    key = json.dumps(parts, sort_keys=True)
    stamp = run_dir / "prepared.json"
    if stamp.is_file() and stamp.read_text() == key:
        return
    for name in ("base_model", "sft_model"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    stamp.write_text(key)


def load_rows(cfg: RecipeConfig) -> list[dict]:
    """The prompt rows (list of dicts) of the recipe's dataset."""
    d = cfg.data
    if d.kind == "arithmetic":
        from rlkit.data.arithmetic import make_arithmetic_dataset

        return make_arithmetic_dataset(
            d.num_prompts, seed=d.seed, max_operand=d.max_operand, ops=d.ops
        )
    from rlkit.data.arithmetic import load_prompt_dataset

    return load_prompt_dataset(d.path, fields=(d.prompt_field,))


def prompt_stream(cfg: RecipeConfig, model_path: str) -> Iterator[Prompt]:
    """An endless, seeded, shuffled stream of tokenised prompts (epoch after epoch)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    rows = load_rows(cfg)
    field = cfg.data.prompt_field

    def encode(row: dict) -> tuple[str, list[int]]:
        # Plain replacement, not str.format: templates contain LaTeX braces like \boxed{}.
        text = cfg.data.prompt_template.replace("{prompt}", str(row[field]))
        if cfg.model.chat_template:
            ids = tok.apply_chat_template(
                [{"role": "user", "content": text}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
            return text, [int(i) for i in ids]
        return text, tok(text, add_special_tokens=False)["input_ids"]

    budget = cfg.rollout.max_model_len - cfg.rollout.max_tokens
    skipped: set[int] = set()

    def gen() -> Iterator[Prompt]:
        rng = random.Random(cfg.data.seed)
        index = itertools.count()
        for _epoch in itertools.count():
            order = list(range(len(rows)))
            rng.shuffle(order)
            for i in order:
                text, ids = encode(rows[i])
                if len(ids) > budget:  # one over-long row must not stop the run
                    if i not in skipped:
                        skipped.add(i)
                        print(
                            f"[rlkit] skipping dataset row {i}: prompt of {len(ids)} tokens "
                            f"leaves no room for {cfg.rollout.max_tokens} new tokens in "
                            f"rollout.max_model_len={cfg.rollout.max_model_len}",
                            file=sys.stderr,
                        )
                    if len(skipped) == len(rows):
                        raise ValueError(
                            "every prompt is longer than rollout.max_model_len - rollout.max_tokens"
                        )
                    continue
                fields = {k: v for k, v in rows[i].items() if k != field}
                yield Prompt(next(index), text, ids, fields)

    return gen()
