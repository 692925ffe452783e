"""The rollout engine interface, declared as the rollout worker uses it (vLLM on CPU/GPU, HF).

A rollout worker (rlkit.runtime.actors.rollout_worker) drives its engine through requests: it adds
them, steps the engine in its loop, collects the finished ones and aborts stale ones (ROLL
Flash's queue scheduling).  A request samples a response, scores given tokens (prefill only), or
asks the next-token logprobs of a prefix (a next-token job: one step of a search such as a
constrained beam, so that searches share engine steps with everything else).  Outside a
worker's loop, `next_token_logprobs` is the same scoring as one batch call, only while no
request is live; an engine may also offer `beam_scorer()`, that scoring with state kept for one
search (the HF engine keeps each beam's KV cache between steps;
rlkit.methods.rere.beam_search.search_scorer falls back to `next_token_logprobs`).  Requests
are token ids, so the caller owns tokenisation and chat templates.  Nothing here knows a method.

`VLLMEngine` implements it directly; `HFEngine` through `BatchRequestAdapter`.  The GPU-only
extras (`sleep` / `wake_up` for the hybrid engine, `init_nccl_sync` / `receive_nccl` for NCCL
weight sync) are `GpuRolloutEngine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


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
    # the prompt tokens from this index on (the worker's `score` request kind).
    prompt_logprobs_from: int | None = None
    # A next-token job (one step of a search, e.g. a constrained beam): nothing is sampled; the
    # finished request's `Completion.next_logprobs` holds the full-vocabulary logprob of the
    # token after the prompt at each of `next_token_ids` (at the `next_token_top_k` most likely
    # tokens when None).  Any number of ids: an engine splits them over requests as it must.
    next_token_ids: list[int] | None = None
    next_token_top_k: int = 0

    @property
    def is_next_token(self) -> bool:
        return self.next_token_ids is not None or self.next_token_top_k > 0


@dataclass
class Completion:
    """One generated response: its token ids, the engine's logprob of each, and why it stopped."""

    token_ids: list[int]
    logprobs: list[float]
    text: str = ""
    finish_reason: str = "stop"  # "stop" | "length" | "abort" | "error"
    # Multi-turn trajectories: 1 per response token the model wrote, 0 per token an environment
    # wrote (never trained; their `logprobs` entries are 0.0).  None: every token is the model's.
    loss_mask: list[int] | None = None
    turns: int = 1  # model turns in the response
    # A next-token job's answer: {token id: full-vocabulary logprob} (SamplingConfig above).
    next_logprobs: dict[int, float] | None = None


@dataclass
class FinishedRequest:
    """A finished (or aborted) request: its id, what it produced, and the policy version of the
    weights it started under."""

    request_id: str
    completion: Completion
    start_version: int
    # Wall-clock seconds (time.time()) the worker handed it to the engine and saw it finish:
    # the run's request timeline (docs/viewer.md).  None where nobody stamped it.
    started_s: float | None = None
    ended_s: float | None = None


@runtime_checkable
class RolloutEngine(Protocol):
    """What a rollout worker's engine offers."""

    tokenizer: Any  # the model's tokenizer (None for a tokenizer-less HF test model)
    model_path: str

    @property
    def version(self) -> int:
        """Policy version of the weights the engine holds."""
        ...

    def add(self, request_id: str, prompt_ids: Sequence[int], sampling: SamplingConfig) -> None:
        """Start one request (one sample, one prefill-only scoring job, or one next-token
        job: a step of a search that other requests' steps share engine steps with)."""
        ...

    def step(self) -> list[FinishedRequest]:
        """One engine iteration; the requests that finished in it."""
        ...

    def abort(self, request_ids: Sequence[str]) -> None:
        """Drop these requests (unknown or finished ids are ignored)."""
        ...

    def num_unfinished(self) -> int: ...

    def pending_ids(self) -> list[str]: ...

    def next_token_logprobs(
        self,
        prefixes: Sequence[Sequence[int]],
        candidates: Sequence[Sequence[int] | None],
        top_k: int = 20,
    ) -> list[dict[int, float]]:
        """Full-vocabulary logprobs of each prefix's candidate next tokens (its top_k if None);
        runs to completion, so only while no request is live."""
        ...

    def load_weights(self, weights: bytes | str, version: int) -> None:
        """Replace the weights (a full state dict: safetensors bytes, or the path of a
        safetensors file on this host: rlkit.engines.model_io.load_weights_state); later
        requests carry `version`."""
        ...


class GpuRolloutEngine(RolloutEngine, Protocol):
    """The GPU-only extras of vLLM on GPU (the hybrid engine in rlkit.runtime.placement.hybrid,
    NCCL weight sync in rlkit.engines.weight_sync_nccl)."""

    def sleep(self) -> None: ...

    def wake_up(self) -> None: ...

    def init_nccl_sync(self, host: str, port: int, rank_offset: int, world_size: int) -> None: ...

    def receive_nccl(self, specs: list, version: int) -> None: ...
