"""One rank of the critic group: M value models (M = 1 for PPO, M > 1 for AsyPPO mini-critics),
each with its own DeepSpeed ZeRO engine, sharing the rank's process group.

`train_step` takes the step's samples with their returns and old values plus, per critic, the
indices of the samples it trains on (all of them for PPO; disjoint subsets for AsyPPO).  The
value loss is PPO's clipped one (rlkit.algos.value_loss), normalised by global counts like the
policy loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rlkit.engines.train_batch import TrainSample, chunks, collate


@dataclass(frozen=True)
class CriticPlan:
    """What one rank of a `world`-rank critic group builds from the recipe."""

    seed: int
    num_critics: int
    micro: int
    grad_accum: int
    ds_config: dict
    lr: float
    value_clip: float
    head_init_std: float


def critic_plan(cfg, world: int) -> CriticPlan:
    """The plan of one critic rank: M critics, each stepping once per training step on its
    share (samples_per_step / M samples, split over `world` ranks)."""
    from rlkit.algos.declared import critic_count
    from rlkit.engines.deepspeed_engine import ds_config, micro_layout

    c, m = cfg.critic, critic_count(cfg)
    # every rank: the same micro-batch count
    micro, accum = micro_layout(cfg.samples_per_step // m, world, 1, c.micro_batch_size)
    return CriticPlan(
        seed=cfg.trainer.seed,
        num_critics=m,
        micro=micro,
        grad_accum=accum,
        ds_config=ds_config(
            c.zero_stage, micro, accum, world, cfg.trainer.grad_clip, cfg.model.dtype
        ),
        lr=c.lr,
        value_clip=c.value_clip,
        head_init_std=c.head_init_std,
    )


class DeepSpeedCritics:
    """The critics of one rank; `cfg` is the whole RecipeConfig (its `critic` section rules)."""

    def __init__(self, rank: int, world: int, addr: str, port: int, model_path: str, cfg):
        from rlkit.engines.dist_env import set_rank_env

        set_rank_env(rank, world, addr, port)
        import deepspeed
        import torch

        from rlkit.engines.value_model import build_value_model

        plan = self.plan = critic_plan(cfg, world)
        torch.manual_seed(plan.seed)
        deepspeed.init_distributed(
            dist_backend="nccl" if torch.cuda.is_available() else "gloo", auto_mpi_discovery=False
        )
        self.rank, self.world, self.cfg = rank, world, cfg
        self.micro, self.grad_accum = plan.micro, plan.grad_accum
        self.engines = []
        for _ in range(plan.num_critics):  # one RNG stream: each critic its own random head
            model = build_value_model(model_path, head_init_std=plan.head_init_std)
            opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=0.0)
            engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=plan.ds_config)
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
        """One optimizer step per critic on its subset; `norms[m]` are its global counts.

        Metrics per critic m: `critic{m}/loss`, `clip_frac`, `values_mean` (micro-batch means),
        `explained_var` = 1 − Var(R − V)/Var(R) over this rank's tokens of the subset, and
        `samples` (this rank's share); `critic/shared_samples` counts samples given to more than
        one critic on this rank (0 when the shards are disjoint)."""
        t0, metrics = time.perf_counter(), {}
        for m, engine in enumerate(self.engines):
            metrics.update(self._train_one(m, engine, samples, returns, old_values, subsets, norms))
        seen = [i for sub in subsets for i in sub]
        metrics["critic/shared_samples"] = float(len(seen) - len(set(seen)))
        metrics["time/critic_rank_s"] = time.perf_counter() - t0
        return metrics

    def _train_one(self, m, engine, samples, returns, old_values, subsets, norms) -> dict:
        """Critic m's step on `subsets[m]` (gradients accumulated over its micro-batches)."""
        import torch

        from rlkit.algos import value_loss

        engine.train()
        out: dict[str, float] = {f"critic{m}/samples": float(len(subsets[m]))}
        mbs, resid, rets = chunks(subsets[m], self.micro), [], []
        for mb in mbs:
            rows = [samples[i] for i in mb]
            batch = collate(rows, self.pad_id)
            ret, old = (
                self._scatter(batch, rows, [src[i] for i in mb]) for src in (returns, old_values[m])
            )
            v = engine(batch["input_ids"], batch["attention_mask"])
            mask = batch["response_mask"].bool()
            loss, lm = value_loss(
                v, old, ret, mask, clip_eps=self.plan.value_clip, agg="token-mean", **norms[m]
            )
            engine.backward(loss * self.world, scale_wrt_gas=False)
            engine.step()
            resid.append((ret - v.detach())[mask])
            rets.append(ret[mask])
            for key, val in lm.items():
                name = f"critic{m}/{key.split('/')[-1]}"
                out[name] = out.get(name, 0.0) + val / len(mbs)
        if rets:
            r, d = torch.cat(rets), torch.cat(resid)
            var = float(r.var()) if r.numel() > 1 else 0.0
            out[f"critic{m}/explained_var"] = 1.0 - float(d.var()) / var if var > 0 else 0.0
        return out

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
