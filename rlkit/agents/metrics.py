"""Agent rollout metrics, per training step (they reach metrics.jsonl with the rollout
counters): trajectories ended, turns per trajectory, environment step latency p50/p95,
environment failures and timeouts, tool-call parse failures, model vs environment tokens."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no data)."""
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s), max(1, math.ceil(q / 100 * len(s)))) - 1]


@dataclass
class AgentMetrics:
    trajectories: int = 0
    turns: int = 0
    failures: int = 0
    timeouts: int = 0
    tool_call_errors: int = 0
    model_tokens: int = 0
    env_tokens: int = 0
    latencies: list[float] = field(default_factory=list)

    def ended(self, turns: int, model_tokens: int, env_tokens: int) -> None:
        self.trajectories += 1
        self.turns += turns
        self.model_tokens += model_tokens
        self.env_tokens += env_tokens

    def take(self) -> dict[str, float]:
        """This step's metrics; the counters start again."""
        out = {
            "env/trajectories": self.trajectories,
            "env/turns_mean": self.turns / max(1, self.trajectories),
            "env/step_latency_p50_s": percentile(self.latencies, 50),
            "env/step_latency_p95_s": percentile(self.latencies, 95),
            "env/failures": self.failures,
            "env/timeouts": self.timeouts,
            "env/tool_call_errors": self.tool_call_errors,
            "env/model_tokens": self.model_tokens,
            "env/env_tokens": self.env_tokens,
        }
        self.__init__()  # type: ignore[misc]
        return out
