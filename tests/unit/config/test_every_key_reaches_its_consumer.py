"""Every recipe key reaches its consumer: changing it changes what the consumer builds.

The table below names, for every leaf key of the schema, a probe that runs the real consumer
code (the trainer's plan, the controller's objects, the component start-up with the actors
replaced by recorders, model/data preparation with the heavy steps recorded) and returns what
it built.  The test fails when a key is added without a probe, or when changing a key changes
nothing its consumer builds: the `algo.entropy_coef` bug of the last round (accepted, never
applied) fails here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rlkit.config import RecipeConfig
from rlkit.config.loader import config_from_dict

EX = "docs/examples"
TINY_RM = {"hidden_size": 64, "num_heads": 1, "intermediate_size": 64}  # a reward.models entry


def leaf_keys(cls=RecipeConfig, prefix="") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        key = prefix + f.metadata.get("key", f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            out += leaf_keys(type(default), key + ".")
        else:
            out.append(key)
    return out


def _set(tree: dict, key: str, value) -> dict:
    node = tree
    *parents, last = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return tree


# ---- probes: what each consumer builds from the recipe -------------------------------------


def trainer(cfg):
    from rlkit.engines.deepspeed_engine import trainer_plan

    return dataclasses.asdict(trainer_plan(cfg, cfg.trainer.world_size))


def spine(cfg):
    """The controller's objects, built for real with stand-ins for workers and actors."""
    from rlkit.runtime.controller.spine import Spine

    sp = Spine(cfg, [object()] * cfg.rollout.num_workers, None, iter([]), None, None, eos_id=2)
    r, st = sp.rollout, sp.rollout.strategy
    stages = [{k: v for k, v in vars(s).items() if k != "cfg"} for s in sp.dispatch.pipeline.stages]
    return {
        "steps": (sp.total_steps, sp.poll_s, sp.groups_per_step),
        "strategy": (type(st).__name__, vars(st.sampling), st.seed, getattr(st, "kw", None)),
        "scheduler": (r.alpha, r.groups_per_step, r.size, r.accept.__name__, r.num_workers),
        "stages": (sp.dispatch.pipeline.names, repr(stages)),
        "publish": sp.publisher.mode,
        "record": (
            sp.recorder.names,
            sp.recorder.save_every,
            sp.recorder.keep_last,
            sp.recorder.save_optimizer,
        ),
        "restarts": sp.restarts.max_restarts,
        "dump": sp.dispatch.dump,
    }


def agent(cfg, model_path):
    """The multi_turn strategy built as the spine builds it: its environment and knobs."""
    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.runtime.controller.strategies import StrategyContext, make_strategy

    r = cfg.rollout
    ctx = StrategyContext(cfg, model_path)
    st = make_strategy(r.strategy, SamplingConfig(), cfg.seed, r.strategy_kw, ctx)
    env = st.env_cls(**st.env_kw)
    return (st.env_cls.__name__, st.env_kw, env.max_calls, env.tools)


def components(cfg, monkeypatch, model_path):
    """`start_components` with every actor replaced by a recorder of its arguments."""
    import ray

    from rlkit.runtime import run
    from rlkit.runtime.actors import trainer_group
    from rlkit.runtime.placement import cluster

    calls = []

    def rec(name):
        def f(*args, **kw):
            calls.append((name, args, {k: v for k, v in kw.items() if k != "env"}))
            return _Stub()

        return f

    class _Stub:
        def __getattr__(self, _):
            return _Stub()

        def __call__(self, *a, **k):
            return _Stub()

    monkeypatch.setattr(cluster, "start_rollout_workers", rec("workers"))
    monkeypatch.setattr(trainer_group, "TrainerGroup", rec("trainer"))
    monkeypatch.setattr("rlkit.runtime.actors.critic_group.CriticGroup", rec("critic"))
    monkeypatch.setattr("rlkit.rewards.RewardPool", rec("rewards"))
    monkeypatch.setattr(
        "rlkit.runtime.actors.critic_group.actor_nodes", lambda ranks: ["trainer-node"]
    )
    monkeypatch.setattr("rlkit.runtime.placement.gpus.cluster_gpus", lambda: 0.0)  # a CPU cluster
    monkeypatch.setattr(ray, "remote", lambda **kw: lambda cls: _Recorded(cls.__name__, calls))
    parts = run.start_components(cfg, model_path, None, None)
    evaluator = {k: v for k, v in (parts.evaluator or {}).items() if k != "actor"}
    # the trainer and critics receive the whole recipe; what they make of it is probed above
    started = [(n, [a for a in args if not isinstance(a, RecipeConfig)], kw)
               for n, args, kw in calls]  # fmt: skip
    return repr((started, evaluator))


class _Recorded:
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def remote(self, *args, **kw):
        self.calls.append((self.name, args, kw))
        return None


def prepared(cfg, monkeypatch, tmp_path, tiny_tok):
    """Model preparation and the prompt stream, heavy steps recorded instead of run (a built
    or extracted model is the tiny tokenizer's folder: SFT demonstrations tokenise with it)."""
    from rlkit.runtime import prepare

    calls = []
    tok_dir = Path(tiny_tok)
    monkeypatch.setattr(
        "rlkit.data.tiny_model.build_tiny_model",
        lambda *a, **k: calls.append(("tiny", k)) or tok_dir,
    )
    monkeypatch.setattr(
        "rlkit.data.smollm2.smollm2_folder", lambda *a, **k: calls.append(("smol", a)) or tok_dir
    )
    monkeypatch.setattr(
        "rlkit.engines.model_io.check_model_dir", lambda p: calls.append(("path", p)) or p
    )

    def sft(base, rows, **kw):
        calls.append(("sft", json.dumps(rows[:3], sort_keys=True), kw.pop("out_dir") and kw))

    monkeypatch.setattr("rlkit.data.sft.sft_warm_start", sft)
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    prepare.prepare_model(cfg, run_dir, log=lambda *_: None)
    return calls


def prompts(cfg, tiny_tok):
    from rlkit.runtime import prepare

    stream = prepare.prompt_stream(cfg, tiny_tok)
    return [(p.text, p.token_ids, p.fields) for p, _ in zip(stream, range(4))]


def logger(cfg, tmp_path):
    from rlkit.runtime.prepare import run_dir_of

    return (str(run_dir_of(cfg).relative_to(tmp_path)), cfg.logging.tensorboard)


# key -> (probe, alternative value, settings the key depends on[, settings of the changed side])
ALT: dict[str, tuple] = {
    "name": ("logger", "other", {}),
    "seed": ("spine", 5, {}),
    "model.kind": ("prepared", "smollm2", {}),
    "model.path": ("prepared", "/elsewhere", {"model.kind": "path", "model.path": "/here"}),
    "model.dtype": ("trainer", "bfloat16", {}),
    "model.tiny.hidden_size": ("prepared", 64, {}),
    "model.tiny.num_layers": ("prepared", 3, {}),
    "model.tiny.num_heads": ("prepared", 4, {}),
    "model.tiny.intermediate_size": ("prepared", 256, {}),
    "model.tiny.seed": ("prepared", 3, {}),
    "model.lora.enabled": ("trainer", True, {}),
    "model.lora.r": ("trainer", 4, {"model.lora.enabled": True}),
    "model.lora.alpha": ("trainer", 4, {"model.lora.enabled": True}),
    "model.lora.dropout": ("trainer", 0.1, {"model.lora.enabled": True}),
    "model.lora.target_modules": ("trainer", ["q_proj"], {"model.lora.enabled": True}),
    "model.chat_template": ("prompts", True, {}),
    "data.kind": ("prompts", "file", {"data.path": "FILE"}),
    "data.path": ("prompts", "FILE2", {"data.kind": "file", "data.path": "FILE"}),
    "data.prompt_field": ("prompts", "question", {"data.kind": "file", "data.path": "FILE2"}),
    "data.prompt_template": ("prompts", "Q: {prompt}", {}),
    "data.num_prompts": ("prompts", 3, {}),
    "data.max_operand": ("prompts", 99, {}),
    "data.ops": ("prompts", "*", {}),
    "data.seed": ("prompts", 7, {}),
    "sft.steps": ("prepared", 2, {}),
    "sft.lr": ("prepared", 0.5, {"sft.steps": 2}),
    "sft.batch_size": ("prepared", 3, {"sft.steps": 2}),
    "sft.num_rows": ("prepared", 2, {"sft.steps": 2}),
    "sft.unboxed_rate": ("prepared", 1.0, {"sft.steps": 2}),
    "sft.demo_rate": (
        "prepared",
        1.0,
        # smollm2 (its folder replaced by the test tokenizer): demonstrations need a tokenizer
        {
            "sft.steps": 2,
            "model.kind": "smollm2",
            "rollout.strategy": "multi_turn",
            "rollout.env": "calculator",
        },  # fmt: skip
    ),
    "rollout.engine": ("components", "hf", {}),
    "rollout.num_workers": ("components", 2, {}),
    "rollout.prompts_per_step": ("spine", 4, {}),
    "rollout.samples_per_prompt": ("spine", 4, {}),
    "rollout.temperature": ("spine", 0.5, {}),
    "rollout.top_p": ("spine", 0.5, {}),
    "rollout.max_tokens": ("spine", 9, {}),
    "rollout.strategy": ("spine", f"{EX}/custom_strategy.py:GreedyFirst", {}),
    "rollout.strategy_kw": ("spine", {"top_k": 5}, {}),
    "rollout.env": (
        "agent",
        "calculator",
        {"rollout.strategy": "multi_turn", "rollout.env": "python_tool"},
    ),
    "rollout.env_kw": (
        "agent",
        {"max_calls": 2},
        {"rollout.strategy": "multi_turn", "rollout.env": "calculator"},
    ),
    "rollout.kv_cache_gib": ("components", 2.0, {}),
    "rollout.worker_cpus": ("components", 0.5, {}),
    "rollout.max_model_len": ("components", 128, {}),
    "rollout.max_worker_restarts": ("spine", 1, {}),
    "rollout.dump": ("spine", True, {}),
    "trainer.world_size": ("trainer", 2, {}),
    "trainer.zero_stage": ("trainer", 3, {}),
    "trainer.lr": ("trainer", 0.5, {}),
    "trainer.lr_schedule": ("trainer", "cosine", {}),
    "trainer.warmup_steps": ("trainer", 2, {}),
    "trainer.min_lr_ratio": ("trainer", 0.5, {"trainer.lr_schedule": "linear"}),
    "trainer.weight_decay": ("trainer", 0.1, {}),
    "trainer.grad_clip": ("trainer", 3.0, {}),
    "trainer.micro_batch_size": ("trainer", 2, {}),
    "trainer.micro_batch_tokens": ("trainer", 64, {}),
    "trainer.packing": ("trainer", True, {}),
    "trainer.mini_batches": ("trainer", 2, {}),
    "trainer.ppo_epochs": ("trainer", 2, {}),
    "trainer.total_steps": ("spine", 7, {}),
    "trainer.save_every": ("spine", 3, {}),
    "trainer.keep_last": ("spine", 3, {}),
    "trainer.save_optimizer": ("spine", False, {}),
    "trainer.max_restarts": ("trainer_restarts", 1, {}),
    "trainer.rank_cpus": ("components", 0.25, {}),
    "trainer.seed": ("trainer", 3, {}),
    "trainer.weight_sync": ("spine", "nccl", {}),
    "algo.advantage": ("spine", "rloo", {}),
    "algo.advantage_kw": ("spine", {"epsilon": 0.1}, {}),
    "algo.policy_loss": ("trainer", "cispo", {}),
    "algo.loss_kw": ("trainer", {"clip_eps_high": 0.28}, {}),
    "algo.agg": ("trainer", "seq-mean-token-mean", {}),
    "algo.kl_beta": ("trainer", 0.1, {}),
    "algo.kl_kind": ("trainer", "k1", {"algo.kl_beta": 0.1}),
    "algo.kl_in_reward": ("spine", True, {"algo.kl_beta": 0.1}),
    "algo.entropy_coef": ("trainer", 0.01, {}),
    "algo.dynamic_sampling": ("spine", True, {}),
    "algo.loss_terms": ("trainer", [{"term": "entropy"}], {}),
    "algo.token_hook": ("trainer", f"{EX}/custom_hook.py:LateTokenWeights", {}),
    "algo.token_hook_kw": ("trainer", {"slope": 2.0}, {}),
    "algo.credit": ("spine", [f"{EX}/custom_stage.py:BrevityBonus"], {}),
    "algo.credit_kw": (
        "spine",
        {f"{EX}/custom_stage.py:BrevityBonus": {"bonus": 0.5}},
        {"algo.credit": [f"{EX}/custom_stage.py:BrevityBonus"]},
    ),
    # the critic and the `gae` estimator go together: the changed recipe sets both
    "critic.enabled": ("components", True, {}, {"algo.advantage": "gae"}),
    "async.mode": ("run_loop", "sync", {}),
    "async.alpha": ("spine", 2, {}),
    "async.poll_s": ("spine", 0.5, {}),
    "reward.fns": ("components", [{"fn": "rewards.format:boxed"}], {}),
    "reward.timeout_s": ("components", 3.0, {}),
    "reward.fallback": ("components", -1.0, {}),
    "reward.num_workers": ("components", 1, {}),
    "reward.mode": ("components", "process", {}),
    "reward.models": ("reward_models", [{"name": "rm", "kind": "classifier", "tiny": TINY_RM}], {}),
    "eval.every": ("components", 2, {"eval.data": "FILE"}),
    "eval.suite": ("components", "math500", {"eval.every": 2, "eval.data": "FILE"}),
    "eval.data": ("components", "FILE2", {"eval.every": 2, "eval.data": "FILE"}),
    "eval.items": ("components", "FILE2", {"eval.every": 2, "eval.data": "FILE"}),
    "eval.engine": ("components", "vllm", {"eval.every": 2, "eval.data": "FILE"}),
    "eval.settings": ("components", {"max_tokens": 3}, {"eval.every": 2, "eval.data": "FILE"}),
    "logging.runs_dir": ("logger", "RUNS2", {}),
    "logging.tensorboard": ("logger", False, {}),
    "logging.console": ("logger_console", False, {}),
    # listing tensorboard starts the logger's writer even with logging.tensorboard: false
    "logging.trackers": ("logger_tb", ["tensorboard"], {"logging.tensorboard": False}),
    "ray.address": ("ray", "127.0.0.1:6379", {}),
    "ray.num_cpus": ("ray", 3.0, {}),
    "ray.object_store_mb": ("ray", 500, {}),
    # colocated: the rollout worker starts with every core's thread (vLLM bound to them)
    "placement": ("components", "colocated", {}),
    # auto: the run continues from its own newest resumable checkpoint
    "resume": ("resumed", "auto", {}),
    "rollout.kv_block_size": ("components", 32, {}),
}
CRITIC = {  # consumed by the critic group: probed through the critic's plan
    "critic.num_critics": 4,
    "critic.model_path": "/critic/model",
    "critic.tiny": {"hidden_size": 64, "num_heads": 1, "intermediate_size": 64},
    "critic.head_init_std": 0.02,
    "critic.placement": "colocated",
    "critic.world_size": 2,
    "critic.zero_stage": 3,
    "critic.lr": 0.5,
    "critic.micro_batch_size": 2,
    "critic.value_clip": 0.5,
    "critic.gamma": 0.9,
    "critic.lam": 0.5,
    "critic.rank_cpus": 0.25,
}
for _k, _v in CRITIC.items():
    ALT[_k] = ("critic", _v, {"critic.enabled": True, "algo.advantage": "gae"})


def critic(cfg, monkeypatch, model_path):
    from rlkit.engines.critic_engine import critic_plan

    plan = dataclasses.asdict(critic_plan(cfg, cfg.critic.world_size))
    return (plan, components(cfg, monkeypatch, model_path), spine(cfg))


def reward_models(cfg, monkeypatch, tmp_path):
    """The reward-model actors and gateways (rlkit.runtime.reward_models), actors recorded."""
    import ray

    from rlkit.runtime.reward_models import start_reward_models

    calls = []
    monkeypatch.setattr(ray, "remote", lambda **kw: lambda cls: _Recorded(cls.__name__, calls))
    started = start_reward_models(cfg.reward.models, tmp_path / "rm", cfg.seed)
    names = sorted(started.gateways) if started else []
    if started:
        started.close()
    return repr((names, calls))


def resumed(cfg):
    """The checkpoint `train` would resume from, with one resumable checkpoint on disk."""
    from rlkit.runtime.prepare import run_dir_of
    from rlkit.runtime.resume import resume_point

    ck = run_dir_of(cfg) / "checkpoints" / "step_3"
    ck.mkdir(parents=True, exist_ok=True)
    (ck / "run_state.json").write_text("{}")
    found = resume_point(cfg, None)
    return found and found.name


def trainer_restarts(cfg):
    """Whether a dead trainer rank restarts the group (rlkit.runtime.trainer_restarts)."""
    from types import SimpleNamespace

    from rlkit.runtime.trainer_restarts import may_restart

    return may_restart(cfg, SimpleNamespace(what="a trainer rank"), 0)


def ray_init(cfg, monkeypatch):
    import ray

    from rlkit.runtime import run

    seen = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.append(kw))
    run.start_ray(cfg)
    return repr(seen)


def test_every_schema_key_has_a_probe():
    assert sorted(ALT) == sorted(leaf_keys())


@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory):
    from transformers import AutoTokenizer

    from rlkit.data.tiny_model import build_tiny_model

    path = build_tiny_model(
        tmp_path_factory.mktemp("tok") / "m", hidden_size=64, num_heads=1, intermediate_size=64
    )
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<a>"
    tok.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("key", sorted(ALT))
def test_changing_a_key_changes_what_its_consumer_builds(key, tmp_path, monkeypatch, tiny_tok):
    from rlkit.runtime import run

    monkeypatch.chdir(Path(__file__).parents[3])  # recipes name files relative to the project
    files = {}
    for name, field in (("FILE", "prompt"), ("FILE2", "question")):
        path = tmp_path / f"{name}.jsonl"
        rows = [{field: f"{name} {i}+1=", "prompt": f"p{name}{i}", "answer": "2"} for i in range(4)]
        path.write_text("\n".join(json.dumps(r) for r in rows))
        files[name] = str(path)
    files["RUNS2"] = str(tmp_path / "runs2")
    probe, alt, extra, *alt_extra = ALT[key]

    def recipe(value=None):
        tree = {"model": {"kind": "tiny"}, "logging": {"runs_dir": str(tmp_path / "runs")}}
        both = {**extra, **(alt_extra[0] if alt_extra and value is not None else {})}
        for k, v in both.items():
            _set(tree, k, files.get(v, v) if isinstance(v, str) else v)
        if value is not None:
            _set(tree, key, files.get(value, value) if isinstance(value, str) else value)
        return config_from_dict(tree)

    def view(cfg):
        fn = {
            "trainer": lambda: trainer(cfg),
            "spine": lambda: spine(cfg),
            "agent": lambda: agent(cfg, tiny_tok),
            "components": lambda: components(cfg, monkeypatch, tiny_tok),
            "prepared": lambda: prepared(cfg, monkeypatch, tmp_path, tiny_tok),
            "prompts": lambda: prompts(cfg, tiny_tok),
            "logger": lambda: logger(cfg, tmp_path),
            "logger_console": lambda: run.make_logger(cfg, tmp_path / "log")._console,
            "logger_tb": lambda: run.make_logger(cfg, tmp_path / "log")._tb is not None,
            "run_loop": lambda: run.loop_for(cfg).__name__,
            "ray": lambda: ray_init(cfg, monkeypatch),
            "critic": lambda: critic(cfg, monkeypatch, tiny_tok),
            "resumed": lambda: resumed(cfg),
            "reward_models": lambda: reward_models(cfg, monkeypatch, tmp_path),
            "trainer_restarts": lambda: trainer_restarts(cfg),
        }[probe]
        return repr(fn())

    assert view(recipe()) != view(recipe(alt)), f"{key}: changing it changed nothing in {probe}"
