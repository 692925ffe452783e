"""The rollout engine interface every generator implements (vLLM on CPU/GPU, HF fallback).

It serves what the algorithms need: n samples per prompt with the sampled tokens' logprobs,
beam search constrained by a logits processor (ReRe), and prefill-only scoring of given token
sequences (answer-probability probes, GRPO-VPS).  Requests are token ids, so the caller owns
tokenisation and chat templates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# A constraint for beam search: given the token ids generated so far (response only), return
# the allowed next token ids (an empty list means "only EOS").  ReRe builds it from an item trie.
AllowedTokensFn = Callable[[Sequence[int]], Sequence[int]]


@dataclass
class SamplingConfig:
    """Sampling settings of one request (a subset of vLLM's SamplingParams)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 64
    seed: int | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False


@dataclass
class Completion:
    """One generated response: its token ids, the engine's logprob of each, and why it stopped."""

    token_ids: list[int]
    logprobs: list[float]
    text: str = ""
    finish_reason: str = "stop"  # "stop" | "length" | "abort"


@dataclass
class BeamResult:
    """One returned beam: response token ids, text and the cumulative log-probability."""

    token_ids: list[int]
    text: str
    score: float


@runtime_checkable
class RolloutEngine(Protocol):
    """What a rollout worker's engine offers. Implementations: VLLMEngine, HFEngine."""

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        """Sample `sampling.n` completions for each prompt (token ids)."""
        ...

    def beam_search(
        self,
        prompts: Sequence[Sequence[int]],
        num_beams: int,
        max_tokens: int,
        allowed_tokens: AllowedTokensFn | None = None,
    ) -> list[list[BeamResult]]:
        """Beam search per prompt, best first; `allowed_tokens` constrains every step."""
        ...

    def score(self, sequences: Sequence[Sequence[int]], start: Sequence[int]) -> list[list[float]]:
        """Prefill-only: logprob of each token of sequences[i][start[i]:] given its prefix."""
        ...

    def load_weights(self, state_dict_bytes: bytes, version: int) -> None:
        """Replace the engine's weights (safetensors bytes of a full state dict)."""
        ...

    @property
    def version(self) -> int:
        """Policy version of the weights the engine holds."""
        ...
