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
from rlkit.engines.train_batch import TrainSample, chunks, collate, token_logprobs


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
        per_rank = cfg["samples_per_step"] // world
        self.micro = min(cfg["micro_batch_size"], per_rank)
        self.grad_accum = -(-per_rank // self.micro)
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

    def train_step(self, samples: list[TrainSample], norms: dict[str, float]) -> dict[str, Any]:
        """One optimizer step on this rank's share; `norms` are the global normalisers."""
        import torch

        from rlkit.algos import aggregate, entropy_from_logits, kl_penalty, policy_loss

        t0 = time.perf_counter()
        algo = self.cfg["algo"]
        self.engine.train()
        totals: dict[str, float] = {}
        micro_batches = chunks(samples, self.micro)
        for mb in micro_batches:
            batch = collate(mb, self.pad_id)
            logp, logits = token_logprobs(self.engine, batch["input_ids"], batch["attention_mask"])
            mask = batch["response_mask"]
            loss, metrics = policy_loss(
                algo["policy_loss"],
                logprobs=logp,
                old_logprobs=logp.detach(),  # one update per step: π_old = π_θ before the step
                advantages=batch["advantages"],
                mask=mask,
                behavior_logprobs=batch["behavior_logprobs"],
                agg=algo["agg"],
                **norms,
                **algo["loss_kw"],
            )
            if algo["kl_beta"] > 0:
                kl = kl_penalty(algo["kl_kind"], logp, batch["ref_logprobs"])
                kl_share = aggregate(kl, mask, algo["agg"], **norms)
                loss = loss + algo["kl_beta"] * kl_share
                metrics["kl/mean"] = float(kl_share.detach()) * len(micro_batches)
            if algo.get("entropy_coef", 0.0):
                ent = entropy_from_logits(logits)
                loss = loss - algo["entropy_coef"] * aggregate(ent, mask, algo["agg"], **norms)
            else:
                with torch.no_grad():
                    ent = entropy_from_logits(logits)
            metrics["entropy/mean"] = float((ent.detach() * mask).sum() / mask.sum().clamp(min=1))
            self.engine.backward(loss * self.world, scale_wrt_gas=False)
            self.engine.step()
            totals["loss/share"] = totals.get("loss/share", 0.0) + float(loss.detach())
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + float(v) / len(micro_batches)
        totals["grad_norm"] = float(self.engine.get_global_grad_norm() or 0.0)
        totals["time/train_rank_s"] = time.perf_counter() - t0
        return totals

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
