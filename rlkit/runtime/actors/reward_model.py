"""The reward-model actor: one scorer of `reward.models` (a classifier or a judge) in its own
Ray process, with its own threads and GPU share; the gateway in the driver batches for it
(rlkit.rewards.models.gateway, started by rlkit.runtime.reward_models).

Methods run one at a time (Ray's default max_concurrency 1): a batch is one model call."""

from __future__ import annotations

import os
from typing import Any

from rlkit.config.schema import RewardModelConfig


class RewardModelActor:
    """Plain class; `ray.remote(RewardModelActor)` makes the actor."""

    def __init__(self, cfg: RewardModelConfig, model_path: str, seed: int = 0):
        import torch

        threads = max(1, cfg.threads)
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        from rlkit.rewards.models.scorers import make_scorer

        self.scorer = make_scorer(cfg, model_path, seed=seed)

    def score(self, items: list[dict[str, Any]]) -> list[float | None]:
        """One score per item (None: the judge's generated text did not parse)."""
        return self.scorer.score(items)

    def ready(self) -> int:
        """The actor's pid, once the model is loaded (tests kill it by pid)."""
        return os.getpid()
