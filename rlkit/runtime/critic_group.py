"""The critic group: Ray actors forming one DeepSpeed group that holds M value models.

PPO uses M = 1 (every critic sees every sample); AsyPPO's mini-critics use M > 1, each group's
G responses split into M disjoint subsets (sample j of a group -> critic j mod M).  The
controller asks for values before a step (GAE on the mean value V̄ = mean_m V_m) and trains the
critics on the returns while the policy trains.
"""

from __future__ import annotations

from rlkit.engines.train_batch import TrainSample, split_even
from rlkit.runtime.rank_group import RankActor, start_rank_group, stop_rank_group


class CriticRank(RankActor):
    """Ray actor body of one critic rank."""

    def setup(self, rank: int, world: int, addr: str, port: int, model_path: str, cfg):
        import torch

        torch.set_num_threads(1)
        from rlkit.engines.critic_engine import DeepSpeedCritics

        self.critics = DeepSpeedCritics(rank, world, addr, port, model_path, cfg)

    def values(self, samples: list[TrainSample]) -> list:
        return self.critics.values(samples)

    def train_step(self, samples, returns, old_values, subsets, norms) -> dict:
        return self.critics.train_step(samples, returns, old_values, subsets, norms)

    def shutdown(self) -> None:
        self.critics.shutdown()


def critic_subsets(group_sizes: list[int], num_critics: int) -> list[list[int]]:
    """Indices (into the flat batch) each critic trains on: sample j of a group -> j mod M."""
    subsets: list[list[int]] = [[] for _ in range(num_critics)]
    start = 0
    for size in group_sizes:
        for j in range(size):
            subsets[j % num_critics].append(start + j)
        start += size
    return subsets


class CriticGroup:
    def __init__(self, model_path: str, cfg, *, world: int, rank_cpus: float, env: dict):
        """`cfg` is the whole RecipeConfig, handed to every rank as is."""
        self.world, self.num_critics = world, cfg.critic.num_critics
        self.ranks, self._setup = start_rank_group(
            CriticRank, world, rank_cpus, env, model_path, cfg
        )

    def wait_ready(self) -> None:
        import ray

        ray.get(self._setup)

    def values(self, samples: list[TrainSample]) -> list[list[list[float]]]:
        """[critic][sample][token] values (each rank scores an equal share)."""
        import ray

        shares = ray.get(
            [r.values.remote(s) for r, s in zip(self.ranks, split_even(samples, self.world))]
        )
        return [[v for share in shares for v in share[m]] for m in range(self.num_critics)]

    def train_async(self, samples, returns, old_values, group_sizes: list[int]) -> list:
        """Start one step of every critic on its subset; ObjectRefs of per-rank metrics."""
        subsets = critic_subsets(group_sizes, self.num_critics)
        norms = [
            {
                "num_tokens": float(sum(len(samples[i].response_ids) for i in sub)),
                "num_seqs": float(len(sub)),
            }
            for sub in subsets
        ]
        per_rank = [[split_even(sub, self.world)[r] for sub in subsets] for r in range(self.world)]
        return [
            rank.train_step.remote(samples, returns, old_values, per_rank[r], norms)
            for r, rank in enumerate(self.ranks)
        ]

    def shutdown(self) -> None:
        stop_rank_group(self.ranks)
