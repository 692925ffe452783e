"""The rollout engine interface every generator implements (vLLM on CPU/GPU, HF fallback).

It serves what the algorithms need: n samples per prompt with the sampled tokens' logprobs,
beam search constrained by an item trie (ReRe), and prefill-only scoring of given token
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
    # A prefill-only scoring job: no sampling; the finished request's `logprobs` are those of
    # the prompt tokens from this index on (answer probes of GRPO-VPS, ReRe scoring).
    prompt_logprobs_from: int | None = None


@dataclass
class Completion:
    """One generated response: its token ids, the engine's logprob of each, and why it stopped."""

    token_ids: list[int]
    logprobs: list[float]
    text: str = ""
    finish_reason: str = "stop"  # "stop" | "length" | "abort"


@dataclass
class BeamResult:
    """One returned beam: response token ids (EOS included when it finished), text (EOS
    stripped) and score = the summed full-vocabulary log-softmax of its tokens."""

    token_ids: list[int]
    text: str = ""
    score: float = 0.0


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
        *,
        allowed_sequences: Sequence[Sequence[int]] | None = None,
    ) -> list[list[BeamResult]]:
        """Beam search per prompt: at most `num_beams` beams, best first.

        `allowed_sequences`: every complete response as token ids ending with the tokenizer's
        EOS (or a prebuilt `rollouts.item_trie.ItemTrie`); each beam is a path of their prefix
        trie. The result equals transformers `generate(num_beams=G, num_return_sequences=G,
        do_sample=False, length_penalty=0.0, prefix_allowed_tokens_fn=<that trie>)`, scores =
        summed full-vocabulary log-softmax (rlkit/engines/constrained_beam.py, docs/rere.md).
        `allowed_tokens` (legacy): a callable giving the allowed next ids of a response prefix.
        """
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
