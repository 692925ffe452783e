"""Request-level interface (add / step / abort) for engines that only generate in batches.

The HF fallback engine has no continuous batching; this adapter queues requests and, on `step`,
generates every queued one as a batch.  Semantics match VLLMEngine's request interface, so the
rollout worker needs no special case.

Next-token jobs (steps of searches) queued together are scored in ONE scorer call per `step`, by
a scorer kept across steps (the engine's `beam_scorer()` when it has one: a beam extending a
prefix of the previous step costs one token, rlkit.engines.prefix_kv_scorer), whichever search
and whichever worker call they came from.  New weights drop the scorer and its cache.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlkit.engines.rollout_protocol import Completion, FinishedRequest, SamplingConfig


class BatchRequestAdapter:
    """Wraps a RolloutEngine; forwards everything else to it."""

    def __init__(self, engine):
        self._inner = engine
        self._queue: dict[str, tuple[list[int], SamplingConfig, int]] = {}
        self._scorer = None  # kept across steps while next-token jobs come (see module doc)

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

    def load_weights(self, weights: bytes | str, version: int) -> None:
        self._scorer = None  # its KV cache was computed by the old weights
        self._inner.load_weights(weights, version)

    def step(self) -> list[FinishedRequest]:
        done = self._next_tokens()
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

    def _next_tokens(self) -> list[FinishedRequest]:
        """Every queued next-token job, scored in one call; they leave the queue."""
        jobs = {r: q for r, q in self._queue.items() if q[1].is_next_token}
        if not jobs:
            return []
        if self._scorer is None:
            make = getattr(self._inner, "beam_scorer", None)
            self._scorer = make() if callable(make) else self._inner.next_token_logprobs
        top_k = max(q[1].next_token_top_k for q in jobs.values())
        got = self._scorer(
            [q[0] for q in jobs.values()], [q[1].next_token_ids for q in jobs.values()], top_k
        )
        done = []
        for (rid, (_, cfg, start)), lps in zip(jobs.items(), got, strict=True):
            if cfg.next_token_ids is None:  # its own top-k of the shared call's
                lps = dict(sorted(lps.items(), key=lambda kv: -kv[1])[: cfg.next_token_top_k])
            done.append(FinishedRequest(rid, Completion([], [], next_logprobs=lps), start))
            del self._queue[rid]
        return done
