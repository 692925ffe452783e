"""One rank of a DeepSpeed ZeRO (stage 0-3) policy trainer: gloo on CPU, NCCL on GPU.

The loss of a training step is normalised by *global* counts (tokens, sequences of the whole
step) handed in by the controller, so the value and the gradient do not depend on how the step
is split over ranks and micro-batches (see rlkit.algos.aggregate).  DeepSpeed averages gradients
over the data-parallel ranks, so each rank's share is multiplied by the world size; the
gradient-accumulation scaling is switched off (`scale_wrt_gas=False`) for the same reason.
"""

from __future__ import annotations

import time
from typing import Any

from rlkit.engines.model_io import apply_lora, check_model_dir, merged_state_dict
from rlkit.engines.train_batch import TrainSample, chunks, collate, split_even, token_logprobs


def ds_config(zero_stage: int, micro_batch: int, grad_accum: int, world: int, cfg: dict) -> dict:
    """The DeepSpeed config of the policy trainer (torch AdamW: DeepSpeedCPUAdam builds ~160 s)."""
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch * grad_accum * world,
        "gradient_clipping": cfg["grad_clip"],
        "zero_optimization": {"stage": zero_stage},
        "bf16": {"enabled": cfg.get("dtype") == "bfloat16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class DeepSpeedPolicyTrainer:
    """Holds the model and DeepSpeed engine of one rank; `train_step` runs one optimizer step."""

    def __init__(self, rank: int, world: int, addr: str, port: int, model_path: str, cfg: dict):
        from rlkit.runtime.rank_group import set_rank_env

        set_rank_env(rank, world, addr, port)
        import deepspeed
        import torch
        from transformers import AutoModelForCausalLM

        torch.manual_seed(cfg["seed"])
        self.rank, self.world, self.cfg = rank, world, cfg
        self.model_path = str(check_model_dir(model_path))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
        # PPO-style: `mini_batches` optimizer steps per epoch, `ppo_epochs` passes per step.
        self.minis, self.epochs = cfg.get("mini_batches", 1), cfg.get("ppo_epochs", 1)
        per_mini = cfg["samples_per_step"] // world // self.minis
        self.micro = min(cfg["micro_batch_size"], per_mini)
        self.grad_accum = -(-per_mini // self.micro)
        dsc = ds_config(cfg["zero_stage"], self.micro, self.grad_accum, world, cfg)
        dtype = torch.bfloat16 if cfg.get("dtype") == "bfloat16" else torch.float32
        if cfg["zero_stage"] == 3:
            # transformers then creates the params partitioned (zero.Init with this config, so
            # fp32 stays fp32) and loads the checkpoint shard by shard.
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_ds_config = HfDeepSpeedConfig(dsc)  # must stay alive while loading
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype)
        if cfg.get("lora", {}).get("enabled"):
            model = apply_lora(model, cfg["lora"])
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=dsc)
        self.pad_id = model.config.pad_token_id or 0

    def train_step(self, samples: list[TrainSample], norms: list[dict]) -> dict[str, Any]:
        """`ppo_epochs` x `mini_batches` optimizer steps on this rank's share.

        `norms[k]` are the global normalisers of mini-batch k (all ranks' k-th chunks).  With a
        single update π_old = π_θ before it; with several, π_old is recomputed first (no grad)."""
        t0 = time.perf_counter()
        self.engine.train()
        if self.minis * self.epochs > 1:
            self._fill_old_logprobs(samples)
        totals: dict[str, float] = {}
        updates = self.epochs * self.minis
        for _ in range(self.epochs):
            for k, mini in enumerate(split_even(samples, self.minis)):
                micro_batches = chunks(mini, self.micro)
                for mb in micro_batches:
                    loss, metrics = self._micro_step(mb, norms[k], len(micro_batches))
                    totals["loss/share"] = totals.get("loss/share", 0.0) + loss / updates
                    for key, v in metrics.items():
                        totals[key] = totals.get(key, 0.0) + v / len(micro_batches) / updates
        totals["grad_norm"] = float(self.engine.get_global_grad_norm() or 0.0)
        totals["time/train_rank_s"] = time.perf_counter() - t0
        return totals

    def _fill_old_logprobs(self, samples: list[TrainSample]) -> None:
        """π_old of every response token, before any update of this step."""
        import torch

        self.engine.eval()
        for mb in chunks(samples, self.micro):
            batch = collate(mb, self.pad_id)
            with torch.no_grad():
                logp, _ = token_logprobs(self.engine, batch["input_ids"], batch["attention_mask"])
            for i, s in enumerate(mb):
                lo = len(s.prompt_ids) - 1
                s.old_logprobs = logp[i, lo : lo + len(s.response_ids)].tolist()
        self.engine.train()

    def _micro_step(self, mb: list[TrainSample], norms: dict, n_micro: int):
        """Forward, loss (policy + optional KL and entropy terms), backward, step."""
        import torch

        from rlkit.algos import aggregate, entropy_from_logits, kl_penalty, policy_loss

        algo = self.cfg["algo"]
        batch = collate(mb, self.pad_id)
        logp, logits = token_logprobs(self.engine, batch["input_ids"], batch["attention_mask"])
        mask = batch["response_mask"]
        old = batch.get("old_logprobs", logp.detach())
        loss, metrics = policy_loss(
            algo["policy_loss"],
            logprobs=logp,
            old_logprobs=old,
            advantages=batch["advantages"],
            mask=mask,
            behavior_logprobs=batch["behavior_logprobs"],
            agg=algo["agg"],
            **norms,
            **algo["loss_kw"],
        )
        if algo["kl_beta"] > 0:
            kl_share = aggregate(
                kl_penalty(algo["kl_kind"], logp, batch["ref_logprobs"]), mask, algo["agg"], **norms
            )
            loss = loss + algo["kl_beta"] * kl_share
            metrics["kl/mean"] = float(kl_share.detach()) * n_micro
        with torch.set_grad_enabled(bool(algo.get("entropy_coef", 0.0))):
            ent = entropy_from_logits(logits)
        if algo.get("entropy_coef", 0.0):
            loss = loss - algo["entropy_coef"] * aggregate(ent, mask, algo["agg"], **norms)
        metrics["entropy/mean"] = float((ent.detach() * mask).sum() / mask.sum().clamp(min=1))
        self.engine.backward(loss * self.world, scale_wrt_gas=False)
        self.engine.step()
        return float(loss.detach()), metrics

    def export_state(self) -> dict | None:
        """The full state dict on rank 0 (gathered under ZeRO-3; every rank must call this)."""
        import deepspeed

        module = self.engine.module
        if self.cfg["zero_stage"] == 3:
            with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
                state = merged_state_dict(module) if self.rank == 0 else None
        else:
            state = merged_state_dict(module) if self.rank == 0 else None
        return state

    def shutdown(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
