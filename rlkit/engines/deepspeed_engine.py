"""One rank of a DeepSpeed ZeRO (stage 0-3) policy trainer: gloo on CPU, NCCL on GPU.

The loss of a training step is normalised by *global* counts (tokens, sequences of the whole
step) handed in by the controller, so the value and the gradient do not depend on how the step
is split over ranks and micro-batches (see rlkit.algos.aggregate).  DeepSpeed averages gradients
over the data-parallel ranks, so each rank's share is multiplied by the world size; the
gradient-accumulation scaling is switched off (`scale_wrt_gas=False`) for the same reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlkit.engines.logprobs import micro_batch_forward
from rlkit.engines.micro_batches import build, step_layout
from rlkit.engines.model_io import apply_lora, check_model_dir, merged_state_dict
from rlkit.engines.train_batch import TrainSample, response_values, split_even


def ds_config(
    zero_stage: int, micro_batch: int, grad_accum: int, world: int, grad_clip: float, dtype: str
) -> dict:
    """The DeepSpeed config of a trainer (torch AdamW: DeepSpeedCPUAdam builds ~160 s)."""
    zero_stage = effective_zero_stage(zero_stage, world, dtype)
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch * grad_accum * world,
        "gradient_clipping": grad_clip,
        "zero_optimization": {"stage": zero_stage},
        "bf16": {"enabled": dtype == "bfloat16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def effective_zero_stage(zero_stage: int, world: int, dtype: str) -> int:
    """The ZeRO stage a group really runs: a one-rank float32 group has nothing to partition,
    so ZeRO-1/2 run as stage 0, the same AdamW update without the partition bookkeeping (2.5 s
    of a 37 s SmolLM2 train step on 2 cores: gradient copies into the partition buffers after
    every backward, and the partitioned step).  ZeRO-3 is kept (it changes how the parameters
    are created and loaded), and so is bfloat16 (stage 0 would swap DeepSpeed's bf16
    optimizer wrapper)."""
    if world == 1 and dtype == "float32" and zero_stage in (1, 2):
        return 0
    return zero_stage


def train_zero_stage(cfg) -> int:
    """The ZeRO stage the recipe's policy trainer runs (`effective_zero_stage`)."""
    t = cfg.trainer
    return effective_zero_stage(t.zero_stage, t.world_size, cfg.model.dtype)


def micro_layout(samples_per_step: int, world: int, minis: int, micro_batch: int) -> tuple:
    """(micro-batch size, gradient-accumulation steps) of one rank's mini-batch."""
    per_mini = samples_per_step // world // minis
    micro = min(micro_batch, per_mini)
    return micro, -(-per_mini // micro)


@dataclass(frozen=True)
class TrainerPlan:
    """Everything a policy-trainer rank derives from the recipe, in one place: what the rank
    builds is this plan, so a test can see every recipe key reach the trainer."""

    seed: int
    mini_batches: int
    ppo_epochs: int
    micro: int
    micro_tokens: int  # padded-token budget of a micro-batch; 0 = `micro` samples
    packing: bool  # one padding-free row per micro-batch (rlkit.engines.micro_batches)
    grad_accum: int
    ds_config: dict
    dtype: str
    lr: float
    weight_decay: float
    lr_factors: tuple[float, ...]  # multiplier of lr per optimizer update
    lora: Any
    terms: tuple
    hook: tuple[str | None, dict]
    agg: str


def trainer_plan(cfg, world: int) -> TrainerPlan:
    """The plan of one rank of a `world`-rank policy trainer for the recipe `cfg`."""
    from rlkit.algos.loss_terms import terms_for
    from rlkit.engines.lr_schedule import lr_factor

    t, a = cfg.trainer, cfg.algo
    if t.packing and a.token_hook:  # hooks read the forward's [b, L] attention captures
        raise ValueError("trainer.packing does not support algo.token_hook yet")
    # PPO-style: `mini_batches` optimizer steps per epoch, `ppo_epochs` passes per step.
    micro, accum = micro_layout(cfg.samples_per_step, world, t.mini_batches, t.micro_batch_size)
    updates = t.mini_batches * t.ppo_epochs
    factors = tuple(
        lr_factor(
            u,
            kind=t.lr_schedule,
            warmup=t.warmup_steps * updates,
            total=t.total_steps * updates,
            min_ratio=t.min_lr_ratio,
        )
        for u in range(t.total_steps * updates + 1)
    )
    return TrainerPlan(
        seed=t.seed,
        mini_batches=t.mini_batches,
        ppo_epochs=t.ppo_epochs,
        micro=micro,
        micro_tokens=t.micro_batch_tokens,
        packing=t.packing,
        grad_accum=accum,
        ds_config=ds_config(t.zero_stage, micro, accum, world, t.grad_clip, cfg.model.dtype),
        dtype=cfg.model.dtype,
        lr=t.lr,
        weight_decay=t.weight_decay,
        lr_factors=factors,
        lora=cfg.model.lora if cfg.model.lora.enabled else None,
        terms=tuple(terms_for(a)),
        hook=(a.token_hook, dict(a.token_hook_kw)),
        agg=a.agg,
    )


class DeepSpeedPolicyTrainer:
    """Holds the model and DeepSpeed engine of one rank; `train_step` runs one training step.

    `cfg` is the whole recipe (RecipeConfig): the trainer reads `trainer`, `model` and `algo`
    there, never a hand-copied dict.  It knows no algorithm: the loss is `algo`'s list of terms
    (rlkit.algos.loss_terms) over the samples' named streams, plus an optional token hook."""

    def __init__(self, rank: int, world: int, addr: str, port: int, model_path: str, cfg):
        from rlkit.engines.dist_env import set_rank_env

        set_rank_env(rank, world, addr, port)
        import deepspeed
        import torch
        from torch.optim.lr_scheduler import LambdaLR
        from transformers import AutoModelForCausalLM

        from rlkit.algos.loss_terms import make_token_hook

        plan = self.plan = trainer_plan(cfg, world)
        torch.manual_seed(plan.seed)
        self.rank, self.world, self.cfg = rank, world, cfg
        self.model_path = str(check_model_dir(model_path))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
        self.minis, self.epochs, self.micro = plan.mini_batches, plan.ppo_epochs, plan.micro
        dtype = torch.bfloat16 if plan.dtype == "bfloat16" else torch.float32
        if plan.ds_config["zero_optimization"]["stage"] == 3:
            # transformers then creates the params partitioned (zero.Init with this config, so
            # fp32 stays fp32) and loads the checkpoint shard by shard.
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_ds_config = HfDeepSpeedConfig(plan.ds_config)  # alive while loading
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype)
        if plan.lora is not None:
            model = apply_lora(model, plan.lora)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=plan.lr, weight_decay=plan.weight_decay)
        factors = plan.lr_factors
        sched = LambdaLR(opt, lambda u: factors[min(u, len(factors) - 1)])
        self.engine, *_ = deepspeed.initialize(
            model=model, optimizer=opt, lr_scheduler=sched, config=plan.ds_config
        )
        self.pad_id = model.config.pad_token_id or 0
        self.terms = list(plan.terms)
        # H per token: differentiated when the entropy term is configured; otherwise only the
        # logged `entropy/mean`, computed detached in the same chunked pass as the logprobs.
        self.entropy_mode = "grad" if any(t.name == "entropy" for t in self.terms) else "no_grad"
        self.hook = make_token_hook(*plan.hook)
        # ZeRO reports the global grad norm; stage 0 (fp32, torch AdamW) does not: measured here
        self._grad_norm = 0.0 if plan.ds_config["zero_optimization"]["stage"] == 0 else None

    def train_step(
        self,
        samples: list[TrainSample],
        norms: list[dict],
        layout: list | None = None,
        before_pass: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """`ppo_epochs` x `mini_batches` optimizer steps on this rank's share.

        The path of a batch, forward only: this rank's share -> mini-batches (`split_even`) ->
        micro-batches (rlkit.engines.micro_batches: `step_layout` picks the samples, `build`
        the padded or packed inputs) -> forward (rlkit.engines.logprobs) -> loss terms
        (rlkit.algos.loss_terms) -> backward, optimizer step per mini-batch.

        `norms[k]` are the global normalisers of mini-batch k (all ranks' k-th chunks);
        `layout[k]` its micro-batches as indices into this rank's k-th chunk, the same count on
        every rank (rlkit.engines.micro_batches.step_layout; computed here when None, which is
        only safe for one rank).  With a single update π_old = π_θ before it; with several,
        π_old is recomputed first (no grad).  `before_pass` runs before every forward and every
        backward (the core lease sets the rank's threads there)."""
        t0 = time.perf_counter()
        minis = split_even(samples, self.minis)
        if layout is None:
            layout = step_layout([minis], self.micro, self.plan.micro_tokens, self.plan.packing)[0]
        plan = [[[mini[i] for i in idx] for idx in lay] for mini, lay in zip(minis, layout)]
        self.engine.train()
        if self.minis * self.epochs > 1:
            self._fill_old_logprobs([mb for mini in plan for mb in mini])
        totals: dict[str, float] = {}
        updates = self.epochs * self.minis
        for _ in range(self.epochs):
            for k, micro_batches in enumerate(plan):
                for j, mb in enumerate(micro_batches):
                    last = j == len(micro_batches) - 1
                    metrics = self._micro_step(mb, norms[k], last, before_pass)
                    for key, v in metrics.items():
                        # shares of a step total add up over micro-batches; the rest average
                        n = 1 if key.endswith("/share") else len(micro_batches)
                        totals[key] = totals.get(key, 0.0) + v / n / updates
        reported = (
            self._grad_norm if self._grad_norm is not None else self.engine.get_global_grad_norm()
        )
        totals["grad_norm"] = float(reported or 0.0)
        totals["lr"] = float(self.engine.get_lr()[0])
        totals["time/train_rank_s"] = time.perf_counter() - t0
        totals["train/micro_batches"] = float(sum(len(m) for m in plan))
        return totals

    def _fill_old_logprobs(self, micro_batches: list[list[TrainSample]]) -> None:
        """π_old of every response token, before any update of this step."""
        import torch

        self.engine.eval()
        for samples in micro_batches:
            with torch.no_grad():
                logp, _, _ = micro_batch_forward(
                    self.engine, build(samples, self.pad_id, self.plan.packing)
                )
            for s, lp in zip(samples, response_values(logp, samples)):
                s.streams["old_logprobs"] = lp
        self.engine.train()

    def _micro_step(
        self,
        samples: list[TrainSample],
        norms: dict,
        boundary: bool,
        before_pass: Callable[[], None] | None = None,
    ) -> dict[str, float]:
        """Forward (with the hook's capture), the configured loss terms, backward, step.

        `boundary`: the last micro-batch of a mini-batch.  The accumulation boundary is set
        explicitly (DeepSpeed's `set_gradient_accumulation_boundary`), so the optimizer steps
        once per mini-batch whatever its micro-batch count; `gradient_accumulation_steps` of the
        config is then only nominal."""
        from rlkit.algos.loss_terms import LossContext, total_loss

        before = before_pass or (lambda: None)
        self.engine.set_gradient_accumulation_boundary(boundary)
        mb = build(samples, self.pad_id, self.plan.packing)
        batch = mb.batch
        before()
        with self.hook.capture(self.engine.module):
            logp, logits, ent = micro_batch_forward(self.engine, mb, entropy=self.entropy_mode)
        batch.update(self.hook.streams(batch))
        ctx = LossContext(batch, logp, logits, self.plan.agg, norms, _entropy=ent)
        loss, metrics = total_loss(self.terms, ctx)
        metrics.update(self.hook.metrics())
        metrics["loss/share"] = float(loss.detach())
        metrics["train/forward_tokens/share"] = float(mb.forward_tokens())
        before()
        self.engine.backward(loss * self.world, scale_wrt_gas=False)
        if boundary and self._grad_norm is not None:  # reduced, not yet clipped
            self._grad_norm = _total_grad_norm(self.engine.module)
        self.engine.step()
        return metrics

    def export_state(self) -> dict | None:
        """The full state dict on rank 0 (gathered under ZeRO-3; every rank must call this)."""
        import deepspeed

        module = self.engine.module
        if self.plan.ds_config["zero_optimization"]["stage"] == 3:
            with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
                state = merged_state_dict(module) if self.rank == 0 else None
        else:
            state = merged_state_dict(module) if self.rank == 0 else None
        return state

    def offload_states(self) -> None:
        """GPU hybrid engine: ZeRO states (parameters, gradients, optimizer) to pinned host
        memory (`DeepSpeedEngine.offload_states`).  A stage-0 group (torch optimizer) has none:
        nothing moves."""
        import torch

        if torch.cuda.is_available() and hasattr(self.engine.optimizer, "offload_states"):
            self.engine.offload_states()
            torch.cuda.empty_cache()

    def reload_states(self) -> None:
        import torch

        if torch.cuda.is_available() and hasattr(self.engine.optimizer, "offload_states"):
            self.engine.reload_states()

    def shutdown(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _total_grad_norm(module) -> float:
    """‖∇‖₂ over the module's gradients (what ZeRO reports as the global grad norm)."""
    import torch

    norms = [
        torch.linalg.vector_norm(p.grad.detach().float())
        for p in module.parameters()
        if p.grad is not None
    ]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
