"""GRPO-VPS: GRPO refined by answer-probability process rewards (docs/vps.md).

- `segments`: cutting a response into segments at line breaks;
- `beliefs`: the policy's belief in the gold answer after each segment (probes);
- `advantage`: beliefs -> token advantages (the `grpo_vps` estimator) and the `vps/*` metrics;
- `stage`: the `vps_probes` credit stage that scores the probes on the rollout engines.
"""

from rlkit.methods.vps.advantage import (
    VPS_MODES,
    grpo_vps_advantage,
    normalized_progress,
    vps_metrics,
)
from rlkit.methods.vps.beliefs import (
    BELIEF_METHODS,
    answer_beliefs,
    belief_from_logprobs,
    build_probes,
)
from rlkit.methods.vps.segments import boundaries_from_pieces, piece_decoder, segment_boundaries

__all__ = [
    "BELIEF_METHODS",
    "VPS_MODES",
    "answer_beliefs",
    "belief_from_logprobs",
    "boundaries_from_pieces",
    "build_probes",
    "grpo_vps_advantage",
    "normalized_progress",
    "piece_decoder",
    "segment_boundaries",
    "vps_metrics",
]
