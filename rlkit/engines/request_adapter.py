"""Request-level interface (add / step / abort) for engines that only generate in batches.

The HF fallback engine has no continuous batching; this adapter queues requests and, on `step`,
generates every queued one as a batch.  Semantics match VLLMEngine's request interface, so the
rollout worker needs no special case.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlkit.engines.rollout_protocol import Completion, FinishedRequest, SamplingConfig


class BatchRequestAdapter:
    """Wraps a RolloutEngine; forwards everything else to it."""

    def __init__(self, engine):
        self._inner = engine
        self._queue: dict[str, tuple[list[int], SamplingConfig, int]] = {}

    def __getattr__(self, name):
        return getattr(self._inner, name)

    @property
    def version(self) -> int:
        return self._inner.version

    def add(self, request_id: str, prompt_ids: Sequence[int], sampling: SamplingConfig) -> None:
        self._queue[request_id] = (list(prompt_ids), sampling, self._inner.version)

    def abort(self, request_ids: Sequence[str]) -> None:
        for r in request_ids:
            self._queue.pop(r, None)

    def num_unfinished(self) -> int:
        return len(self._queue)

    def pending_ids(self) -> list[str]:
        return list(self._queue)

    def step(self) -> list[FinishedRequest]:
        done = []
        for rid, (prompt, sampling, start) in list(self._queue.items()):
            if sampling.prompt_logprobs_from is not None:  # prefill-only scoring job
                lps = self._inner.score([prompt], [sampling.prompt_logprobs_from])[0]
                done.append(FinishedRequest(rid, Completion([], lps), start))
                continue
            one = SamplingConfig(**{**sampling.__dict__, "n": 1})
            (completion,) = self._inner.generate([prompt], one)[0][:1]
            done.append(FinishedRequest(rid, completion, start))
        self._queue.clear()
        return done
