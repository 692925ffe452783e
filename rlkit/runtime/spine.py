"""State and operations shared by the synchronous loop and the asynchronous controller.

One object owns the cluster handles (rollout workers, trainer group, reference model), the
prompt stream, the reward pool, the staleness manager and the metrics of the current step.
The two loops in `rlkit.runtime.loops` only decide *when* to call these operations.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rlkit.engines.rollout_protocol import SamplingConfig
from rlkit.runtime.groups import (
    Group,
    Prompt,
    Sample,
    build_batch,
    group_requests,
    parse_request_id,
)
from rlkit.runtime.staleness import GroupBuffer, StalenessManager
from rlkit.runtime.trainer_group import merge_rank_metrics


@dataclass
class SpineConfig:
    """The subset of the recipe the loops need (plain values, picklable)."""

    total_steps: int
    groups_per_step: int
    samples_per_prompt: int
    alpha: int
    sampling: SamplingConfig
    seed: int
    advantage: str
    advantage_kw: dict = field(default_factory=dict)
    kl_beta: float = 0.0
    kl_kind: str = "k3"
    kl_in_reward: bool = False
    poll_s: float = 0.05
    save_every: int = 0
    engine_names: tuple[str, str] = ("vllm", "deepspeed")
    weight_sync: str = "object_store"
    dynamic_sampling: bool = False
    gae_kw: dict = field(default_factory=lambda: {"gamma": 1.0, "lam": 0.95})
    algo_names: dict = field(default_factory=dict)  # logged with every step


def has_signal(group: Group) -> bool:
    """DAPO dynamic sampling: a group whose rewards are all equal has zero advantage."""
    import torch

    from rlkit.algos import dynamic_sampling_filter

    rewards = torch.tensor([s.reward for s in group.samples.values()], dtype=torch.float64)
    return bool(
        dynamic_sampling_filter(
            rewards, torch.zeros(len(rewards), dtype=torch.long)
        ).keep_mask.all()
    )


class Spine:
    def __init__(
        self,
        cfg: SpineConfig,
        workers: list,
        trainer,
        prompts: Iterator[Prompt],
        rewards,
        logger,
        *,
        reference=None,
        critic=None,
        checkpoint_dir: str | None = None,
    ):
        self.cfg, self.workers, self.trainer, self.reference = cfg, workers, trainer, reference
        self.critic = critic
        self.prompts, self.rewards, self.logger = prompts, rewards, logger
        self.checkpoint_dir = checkpoint_dir
        self.staleness = StalenessManager(cfg.alpha, cfg.groups_per_step)
        self.buffer = GroupBuffer()
        self.running: dict[int, Group] = {}
        self.reward_futures: list[tuple[Group, int, Any]] = []
        self.next_group_id = 0
        self.worker_version = 0  # version whose weights were sent to every worker
        self.step = 0
        self.step_tokens = 0
        self.t_last = time.perf_counter()
        self.history: list[dict] = []
        self._train_t0 = 0.0
        self.evaluator: dict | None = None  # {"actor", "every", "suite", "data", ...}
        self.pending_evals: list = []
        self.failed_groups = 0

    # ---- rollout side ----
    def new_group(self) -> tuple[Group, list]:
        """Admit the next prompt as a group on the least-loaded worker; returns its requests."""
        load = [0] * len(self.workers)
        for g in self.running.values():
            load[g.worker] += 1
        worker = min(range(len(self.workers)), key=lambda w: (load[w], w))
        group = Group(
            self.next_group_id,
            next(self.prompts),
            self.cfg.samples_per_prompt,
            self.worker_version,
            worker,
        )
        self.next_group_id += 1
        self.running[group.group_id] = group
        self.staleness.on_start()
        return group, group_requests(group, self.cfg.sampling, self.cfg.seed)

    def on_finished(self, finished: list) -> None:
        """Record finished samples and start their rewards at once (queue scheduling)."""
        for f in finished:
            gid, j = parse_request_id(f.request_id)
            group = self.running.get(gid)
            if group is None or f.completion.finish_reason == "abort":
                continue  # its group was aborted as too stale
            if f.completion.finish_reason == "error":  # the engine refused the request
                self._drop_failed(group, f.completion.text)
                continue
            group.start_version = min(group.start_version, f.start_version)
            group.samples[j] = Sample(j, f.completion, f.start_version)
            self.step_tokens += len(f.completion.token_ids)
            fields = {**group.prompt.fields, "num_tokens": len(f.completion.token_ids)}
            fut = self.rewards.submit(group.prompt.text, f.completion.text, fields)
            self.reward_futures.append((group, j, fut))

    def _drop_failed(self, group: Group, error: str) -> None:
        """A group the engine could not serve is dropped, counted, logged once; a new one
        takes its slot."""
        del self.running[group.group_id]
        self.staleness.on_filter()
        self.failed_groups += 1
        self.reward_futures = [t for t in self.reward_futures if t[0] is not group]
        if self.failed_groups == 1:
            print(
                f"[rlkit] dropping a group the rollout engine refused ({error}); further "
                f"ones are counted in rollout/failed_groups",
                file=sys.stderr,
            )

    def poll_rewards(self, wait_s: float = 0.0) -> int:
        """Move groups whose every sample is generated and rewarded into the buffer."""
        import concurrent.futures as cf

        if wait_s and self.reward_futures:
            cf.wait(
                [f for _, _, f in self.reward_futures],
                timeout=wait_s,
                return_when=cf.FIRST_COMPLETED,
            )
        pending, completed = [], 0
        for group, j, fut in self.reward_futures:
            if not fut.done():
                pending.append((group, j, fut))
                continue
            res = fut.result()
            s = group.samples[j]
            s.reward, s.components, s.reward_failed = res.score, res.components, res.failed
            if group.done and group.group_id in self.running:
                del self.running[group.group_id]
                if self.cfg.dynamic_sampling and not has_signal(group):
                    self.staleness.on_filter()
                    continue
                self.staleness.on_finish()
                self.buffer.put(group)
                completed += 1
        self.reward_futures = pending
        return completed

    def all_generated(self) -> bool:
        """True when every running group has all its samples (rewards may be pending)."""
        return all(len(g.samples) == g.size for g in self.running.values())

    def abort_stale(self) -> dict[int, list[str]]:
        """Abort running groups that can no longer be trained on; request ids per worker."""
        min_version = self.staleness.min_usable_version(self.step, self.cfg.alpha)
        aborts: dict[int, list[str]] = {}
        for gid, g in list(self.running.items()):
            if g.start_version < min_version:
                aborts.setdefault(g.worker, []).extend(g.request_ids)
                del self.running[gid]
                self.staleness.on_abort()
        self.reward_futures = [t for t in self.reward_futures if t[0].group_id in self.running]
        return aborts

    # ---- training side ----
    def take_batch(self) -> list[Group] | None:
        min_version = self.staleness.min_usable_version(self.step, self.cfg.alpha)
        self.staleness.on_drop(len(self.buffer.drop_stale(min_version)))
        groups = self.buffer.take(self.cfg.groups_per_step)
        if groups is not None:
            self.staleness.on_consume(len(groups))
        return groups

    def start_train(self, groups: list[Group]) -> tuple[list, dict]:
        """Build the batch and launch the step on the trainer group (non-blocking)."""
        import ray

        samples, stats = build_batch(groups, self.cfg.advantage, self.cfg.advantage_kw)
        if self.cfg.kl_beta > 0:
            for s, lp in zip(samples, ray.get(self.reference.logprobs.remote(samples))):
                s.ref_logprobs = lp
        self._train_t0 = time.perf_counter()
        groups = sorted(groups, key=lambda g: g.group_id)  # the order of `samples`
        stale = [self.step - g.start_version for g in groups]
        stats.update({"staleness/mean": sum(stale) / len(stale), "staleness/max": max(stale)})
        penalties = self._kl_in_reward(groups, samples, stats) if self.cfg.kl_in_reward else None
        refs = []
        if self.critic is not None:
            refs = self._critic_step(groups, samples, stats, penalties)
        return refs + self.trainer.train_step_async(samples), stats

    def _kl_in_reward(self, groups: list[Group], samples: list, stats: dict) -> list:
        """β·KL per token subtracted from the reward (rlkit.runtime.kl_reward)."""
        from rlkit.runtime.kl_reward import apply_to_outcome_advantages, kl_token_penalties

        penalties = kl_token_penalties(samples, self.cfg.kl_kind, self.cfg.kl_beta)
        if self.critic is None:
            rewards = [g.samples[j].reward for g in groups for j in range(g.size)]
            gids = [g.group_id for g in groups for _ in range(g.size)]
            stats["kl/reward_penalty"] = apply_to_outcome_advantages(
                samples, rewards, gids, penalties, self.cfg.advantage, self.cfg.advantage_kw
            )
        return penalties

    def _critic_step(
        self, groups: list[Group], samples: list, stats: dict, penalties: list | None = None
    ) -> list:
        """PPO with a critic: values -> GAE advantages into `samples`; start the critic step."""
        import torch

        from rlkit.algos import gae_returns, masked_whiten, place_at_last_token

        values = self.critic.values(samples)  # [critic][sample][token]
        n_critics, lengths = len(values), [len(s.response_ids) for s in samples]
        width = max(lengths)
        mask = torch.tensor([[t < n for t in range(width)] for n in lengths])
        v = torch.zeros((len(samples), width))
        for i, n in enumerate(lengths):
            v[i, :n] = (
                torch.tensor(values[0][i])
                if n_critics == 1
                else torch.tensor([values[m][i] for m in range(n_critics)]).mean(0)
            )
        rewards = place_at_last_token(
            torch.tensor([g.samples[j].reward for g in groups for j in range(g.size)]), mask
        )
        for i, pen in enumerate(penalties or []):  # KL in the reward: -β·k_t at every token
            rewards[i, : len(pen)] -= torch.tensor(pen, dtype=rewards.dtype)
        adv, ret = gae_returns(rewards, v, mask, **self.cfg.gae_kw)
        adv = masked_whiten(adv, mask)
        for i, (s, n) in enumerate(zip(samples, lengths)):
            s.advantage = adv[i, :n].tolist()
        stats["critic/value_mean"] = float(v[mask].mean())
        stats["critic/return_mean"] = float(ret[mask].mean())
        returns = [ret[i, :n].tolist() for i, n in enumerate(lengths)]
        return self.critic.train_async(samples, returns, values, [g.size for g in groups])

    def finish_train(self, refs: list, stats: dict) -> dict:
        """Collect the step's metrics, bump the version, send the new weights, log."""
        import ray

        results = ray.get(refs)
        n_critic = len(results) - self.trainer.world
        metrics = merge_rank_metrics(results[n_critic:])
        if n_critic:
            metrics.update(
                {k: sum(r[k] for r in results[:n_critic]) / n_critic for k in results[0]}
            )
        metrics["time/train_s"] = time.perf_counter() - self._train_t0
        self.step += 1
        if self.cfg.weight_sync == "nccl":  # GPU: broadcast, receivers run concurrently
            for w in self.workers:
                w.receive_nccl.remote(self.trainer.nccl_specs, self.step)
            self.trainer.broadcast_weights_async()
        else:
            blob = self.trainer.export_weights_async()
            for w in self.workers:
                w.load_weights.remote(blob, self.step)
        self.worker_version = self.step
        now = time.perf_counter()
        step_s, self.t_last = now - self.t_last, now
        record = {
            **self.rewards.metrics(),  # pool-wide counts; the batch's own stats win below
            "step": self.step,
            "policy_version": self.step,
            **stats,
            **metrics,
            "time/step_s": step_s,
            "throughput/tokens_per_s": self.step_tokens / max(step_s, 1e-9),
            "rollout/aborted_groups": self.staleness.aborted_stale,
            "rollout/dropped_groups": self.staleness.dropped_stale,
            "rollout/filtered_groups": self.staleness.filtered - self.failed_groups,
            "rollout/failed_groups": self.failed_groups,
            **self.cfg.algo_names,
            "engine/rollout": self.cfg.engine_names[0],
            "engine/train": self.cfg.engine_names[1],
        }
        self.step_tokens = 0
        if self.checkpoint_dir and self.cfg.save_every and self.step % self.cfg.save_every == 0:
            self.save(self.step)
        self.maybe_eval()
        record.update(self.collect_evals())
        self.logger.log(record)
        self.history.append(record)
        return record

    # ---- evaluation during training ----
    def maybe_eval(self) -> None:
        """At eval steps, hand the new weights to the eval actor (runs concurrently)."""
        ev = self.evaluator
        if ev is None or self.step % ev["every"]:
            return
        blob = self.trainer.export_weights_async()
        ref = ev["actor"].evaluate.remote(
            blob, self.step, ev["suite"], ev["data"], ev["items"], ev["settings"]
        )
        self.pending_evals.append(ref)

    def collect_evals(self, wait: bool = False) -> dict:
        """Results of finished evaluations (all of them when `wait`), also to eval.jsonl."""
        import ray

        if not self.pending_evals:
            return {}
        n = len(self.pending_evals) if wait else 0
        ready, self.pending_evals = ray.wait(
            self.pending_evals, num_returns=max(n, 1), timeout=None if wait else 0
        )
        merged: dict = {}
        for result in ray.get(ready):
            self.logger.log_eval(result)
            merged.update({k: v for k, v in result.items() if k != "step"})
            merged["eval/step"] = result["step"]
        return merged

    def save(self, step: int) -> str:
        return self.trainer.save(f"{self.checkpoint_dir}/step_{step}")
