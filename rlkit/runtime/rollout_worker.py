"""The rollout worker: a Ray actor holding one rollout engine and serving per-sample requests.

The controller keeps at most one `run` call outstanding per worker.  A call adds new requests,
aborts the ones that became too stale, and steps the engine until some request finishes or a
short deadline passes; Ray runs the worker's calls in order, so a `load_weights` sent after a
`run` takes effect between engine steps, and every request added later is stamped with the new
policy version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.engines.vllm_engine import FinishedRequest


@dataclass
class SampleRequest:
    """One sample to generate: `request_id` is "<group_id>:<index>"."""

    request_id: str
    prompt_ids: list[int]
    sampling: SamplingConfig


class RolloutWorker:
    """Plain class; `ray.remote(RolloutWorker)` makes the actor (see runtime.cluster)."""

    def __init__(self, engine_kind: str, model_path: str, engine_kw: dict, threads: int = 1):
        import torch

        torch.set_num_threads(max(1, threads))
        from rlkit.engines import make_rollout_engine

        self.engine = make_rollout_engine(engine_kind, model_path, **engine_kw)

    def run(self, new: list[SampleRequest], abort_ids: list[str], max_wait_s: float = 0.5) -> list:
        """Add `new`, abort `abort_ids`, step until something finishes or `max_wait_s` passes."""
        t0 = time.perf_counter()
        if abort_ids:
            self.engine.abort(abort_ids)
        finished = []
        for req in new:
            try:
                self.engine.add(req.request_id, req.prompt_ids, req.sampling)
            except Exception as exc:  # a bad request is reported, not fatal to the worker
                failed = Completion(
                    [], [], text=f"{type(exc).__name__}: {exc}"[:300], finish_reason="error"
                )
                finished.append(FinishedRequest(req.request_id, failed, self.engine.version))
        while self.engine.num_unfinished() and not (finished and time.perf_counter() - t0 > 0.01):
            finished += self.engine.step()
            if time.perf_counter() - t0 > max_wait_s:
                break
        return finished

    def num_unfinished(self) -> int:
        return self.engine.num_unfinished()

    def abort_all(self) -> int:
        """Drop every request in flight (end of a run); returns how many."""
        ids = self.engine.pending_ids()
        self.engine.abort(ids)
        while self.engine.num_unfinished():  # let the engine retire the aborted requests
            self.engine.step()
        return len(ids)

    def load_weights(self, blob: bytes, version: int) -> int:
        self.engine.load_weights(blob, version)
        return version

    def init_nccl_sync(self, host: str, port: int, rank_offset: int, world: int) -> None:
        self.engine.init_nccl_sync(host, port, rank_offset, world)

    def receive_nccl(self, specs: list, version: int) -> int:
        self.engine.receive_nccl(specs, version)
        return version

    def version(self) -> int:
        return self.engine.version

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list:
        return self.engine.generate(prompts, sampling)

    def beam_search(self, prompts, num_beams: int, max_tokens: int, allowed_tokens=None):
        return self.engine.beam_search(prompts, num_beams, max_tokens, allowed_tokens)

    def score(self, sequences, start):
        return self.engine.score(sequences, start)
