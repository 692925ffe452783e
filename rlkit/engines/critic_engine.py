"""One rank of the critic group: M value models (M = 1 for PPO, M > 1 for AsyPPO mini-critics),
each with its own DeepSpeed ZeRO engine, sharing the rank's process group.

`train_step` takes the step's samples with their returns and old values plus, per critic, the
indices of the samples it trains on (all of them for PPO; disjoint subsets for AsyPPO).  The
value loss is PPO's clipped one (rlkit.algos.value_loss), normalised by global counts like the
policy loss.
"""

from __future__ import annotations

import time

from rlkit.engines.train_batch import TrainSample, chunks, collate


class DeepSpeedCritics:
    """The critics of one rank; `cfg` is the whole RecipeConfig (its `critic` section rules)."""

    def __init__(self, rank: int, world: int, addr: str, port: int, model_path: str, cfg):
        from rlkit.runtime.rank_group import set_rank_env

        set_rank_env(rank, world, addr, port)
        import deepspeed
        import torch

        from rlkit.engines.deepspeed_engine import ds_config, micro_layout
        from rlkit.engines.value_model import build_value_model

        c = cfg.critic
        torch.manual_seed(cfg.trainer.seed)
        deepspeed.init_distributed(
            dist_backend="nccl" if torch.cuda.is_available() else "gloo", auto_mpi_discovery=False
        )
        self.rank, self.world, self.cfg = rank, world, cfg
        # every rank: the same micro-batch count
        self.micro, self.grad_accum = micro_layout(
            cfg.samples_per_step // c.num_critics, world, 1, c.micro_batch_size
        )
        dsc = ds_config(
            c.zero_stage, self.micro, self.grad_accum, world, cfg.trainer.grad_clip, cfg.model.dtype
        )
        self.engines = []
        for _ in range(c.num_critics):
            model = build_value_model(model_path)
            opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=0.0)
            engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=dsc)
            self.engines.append(engine)
        self.pad_id = 0

    def values(self, samples: list[TrainSample]) -> list[list[list[float]]]:
        """Per critic, per sample: V of each response token state (no grad)."""
        import torch

        out = []
        for engine in self.engines:
            engine.eval()
            per_sample = []
            for mb in chunks(samples, self.micro):
                batch = collate(mb, self.pad_id)
                with torch.no_grad():
                    v = engine(batch["input_ids"], batch["attention_mask"])
                for i, s in enumerate(mb):
                    lo = len(s.prompt_ids) - 1
                    per_sample.append(v[i, lo : lo + len(s.response_ids)].tolist())
            out.append(per_sample)
        return out

    def train_step(
        self,
        samples: list[TrainSample],
        returns: list[list[float]],
        old_values: list[list[list[float]]],
        subsets: list[list[int]],
        norms: list[dict],
    ) -> dict:
        """One optimizer step per critic on its subset; `norms[m]` are its global counts."""
        from rlkit.algos import value_loss

        t0, metrics = time.perf_counter(), {}
        for m, engine in enumerate(self.engines):
            engine.train()
            mbs = chunks(subsets[m], self.micro)
            for mb in mbs:
                rows = [samples[i] for i in mb]
                batch = collate(rows, self.pad_id)
                ret, old = (
                    self._scatter(batch, rows, [src[i] for i in mb])
                    for src in (returns, old_values[m])
                )
                v = engine(batch["input_ids"], batch["attention_mask"])
                loss, lm = value_loss(
                    v,
                    old,
                    ret,
                    batch["response_mask"],
                    clip_eps=self.cfg.critic.value_clip,
                    agg="token-mean",
                    **norms[m],
                )
                engine.backward(loss * self.world, scale_wrt_gas=False)
                engine.step()
                for key, val in lm.items():
                    metrics[f"critic{m}/{key.split('/')[-1]}"] = metrics.get(
                        f"critic{m}/{key.split('/')[-1]}", 0.0
                    ) + val / len(mbs)
        metrics["time/critic_rank_s"] = time.perf_counter() - t0
        return metrics

    @staticmethod
    def _scatter(batch: dict, rows: list[TrainSample], per_token: list[list[float]]):
        """Response-token values -> the target-aligned [b, L-1] frame of `batch`."""
        import torch

        out = torch.zeros_like(batch["response_mask"])
        for i, (s, vals) in enumerate(zip(rows, per_token)):
            lo = len(s.prompt_ids) - 1
            out[i, lo : lo + len(vals)] = torch.tensor(vals, dtype=out.dtype)
        return out

    def shutdown(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
