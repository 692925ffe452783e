"""Pure-tensor RL algorithms: advantage estimators, policy losses, KL, aggregation, DAPO, critic.

Everything here is a function of tensors (no model, no distributed state), registered by name so
configs can select it. Formulas and defaults: docs/algorithms.md. Importing this package imports
torch; ``import rlkit`` does not import it.
"""

from rlkit.algos.advantages import compute_advantages, group_index, group_stats
from rlkit.algos.aggregation import AGG_MODES, aggregate, compute_normalizers
from rlkit.algos.asyppo import asyppo_masks
from rlkit.algos.attention_credit import attention_gammas, attention_signals, gamma_metrics
from rlkit.algos.critic import value_loss
from rlkit.algos.dapo import DynamicSamplingResult, dynamic_sampling_filter, overlong_reward_penalty
from rlkit.algos.entropy import entropy_from_logits
from rlkit.algos.gae import gae_returns
from rlkit.algos.kl import (
    KL_KINDS,
    AdaptiveKLController,
    FixedKLController,
    apply_kl_to_rewards,
    kl_penalty,
)
from rlkit.algos.masked_ops import (
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    place_at_last_token,
)
from rlkit.algos.policy_losses import policy_loss
from rlkit.algos.registry import (
    ADVANTAGES,
    POLICY_LOSSES,
    UnknownNameError,
    register_advantage,
    register_policy_loss,
)
from rlkit.algos.vps import answer_beliefs, segment_boundaries, vps_metrics

__all__ = [
    "ADVANTAGES",
    "AGG_MODES",
    "KL_KINDS",
    "POLICY_LOSSES",
    "AdaptiveKLController",
    "DynamicSamplingResult",
    "FixedKLController",
    "UnknownNameError",
    "aggregate",
    "answer_beliefs",
    "apply_kl_to_rewards",
    "asyppo_masks",
    "attention_gammas",
    "attention_signals",
    "compute_advantages",
    "compute_normalizers",
    "dynamic_sampling_filter",
    "entropy_from_logits",
    "gae_returns",
    "gamma_metrics",
    "group_index",
    "group_stats",
    "kl_penalty",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "overlong_reward_penalty",
    "place_at_last_token",
    "policy_loss",
    "register_advantage",
    "register_policy_loss",
    "segment_boundaries",
    "value_loss",
    "vps_metrics",
]
