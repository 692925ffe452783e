"""Pure-tensor RL algorithms: advantage estimators, policy losses, KL, aggregation, DAPO, critic.

Everything here is a function of tensors (no model, no distributed state), registered by name so
configs can select it. Formulas and defaults: docs/algorithms.md. Composite methods (GRPO-VPS,
AsyPPO, attention credit, ReRe) are packages of their own under rlkit.methods. Importing this
package imports torch; ``import rlkit`` does not import it.
"""

from rlkit.algos.advantages import compute_advantages, group_index, group_stats
from rlkit.algos.aggregation import AGG_MODES, aggregate, global_normalizers
from rlkit.algos.critic import disjoint_shares, value_loss
from rlkit.algos.dapo import DynamicSamplingResult, dynamic_sampling_filter
from rlkit.algos.entropy import entropy_from_logits
from rlkit.algos.gae import gae_returns
from rlkit.algos.kl import KL_KINDS, kl_penalty, kl_token_penalties
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

__all__ = [
    "ADVANTAGES",
    "AGG_MODES",
    "KL_KINDS",
    "POLICY_LOSSES",
    "DynamicSamplingResult",
    "UnknownNameError",
    "aggregate",
    "compute_advantages",
    "disjoint_shares",
    "dynamic_sampling_filter",
    "entropy_from_logits",
    "gae_returns",
    "global_normalizers",
    "group_index",
    "group_stats",
    "kl_penalty",
    "kl_token_penalties",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "place_at_last_token",
    "policy_loss",
    "register_advantage",
    "register_policy_loss",
    "value_loss",
]
