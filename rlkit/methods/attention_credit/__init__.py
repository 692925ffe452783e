"""Attention-based credit assignment (arXiv 2510.13554, "preplan-and-anchor";
docs/attention_credit.md): token weights γ from the policy's own attention, multiplied into the
advantages by the `attention_credit` trainer token hook.

- `signals`: capturing post-RoPE q/k during a forward and the WAAD / FAI signals from them;
- `gammas`: the preplan / anchor / coupled token weights γ from WAAD and FAI;
- `hook`: the `attention_credit` token hook that runs both on the training forward.
"""

from rlkit.methods.attention_credit.gammas import (
    STRATEGIES,
    GammaKnobs,
    attention_gammas,
    gamma_metrics,
    token_sets,
)
from rlkit.methods.attention_credit.hook import (
    AttentionCreditHook,
    attention_credit,
    input_frame,
    to_target_frame,
)
from rlkit.methods.attention_credit.signals import (
    DEFAULT_CHUNK,
    AttentionCaptureError,
    QKCapture,
    SignalKnobs,
    attention_signals,
    capture_qk,
    default_layers,
    find_attention_modules,
    signals_from_qk,
)

__all__ = [
    "DEFAULT_CHUNK",
    "STRATEGIES",
    "AttentionCaptureError",
    "AttentionCreditHook",
    "GammaKnobs",
    "QKCapture",
    "SignalKnobs",
    "attention_credit",
    "attention_gammas",
    "attention_signals",
    "capture_qk",
    "default_layers",
    "find_attention_modules",
    "gamma_metrics",
    "input_frame",
    "signals_from_qk",
    "to_target_frame",
    "token_sets",
]
