"""Rewards from models (docs/rewards.md, "Model rewards"): named scorers a reward function
calls as ``ctx.models[name].score(items)``.

verdict   templates, the verdict probability and the regex verdict (pure functions)
scorers   the classifier and the judge on an engine (run inside the reward-model actor)
gateway   a loopback server batching every reward process's requests, timeouts, fallbacks,
          restarts, a score cache and the ``reward_model/<name>/*`` metrics
handle    ``ModelHandle`` (what ``ctx.models[name]`` is) and ``RewardContext`` (``ctx``)
tiny      tiny random classifier / judge folders for CPU recipes and tests (no downloads)
"""

from rlkit.rewards.models.gateway import Backend, BackendDied, ModelGateway
from rlkit.rewards.models.handle import ModelCallError, ModelHandle, RewardContext

__all__ = [
    "Backend",
    "BackendDied",
    "ModelCallError",
    "ModelGateway",
    "ModelHandle",
    "RewardContext",
]
