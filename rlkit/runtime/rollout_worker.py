"""The rollout worker: a Ray actor holding one rollout engine and serving per-sample requests.

The controller keeps at most one `run` call outstanding per worker.  A call adds new requests,
aborts the ones that became too stale, and steps the engine until some request finishes or a
short deadline passes; Ray runs the worker's calls in order, so a `load_weights` sent after a
`run` takes effect between engine steps, and every request added later is stamped with the new
policy version.

All engine work goes through this one request loop: prefill-only scoring jobs (`score`, the
answer probes) are requests of the same engine, and outputs of sampling requests that finish
while such a call steps the engine are held and returned by the next `run`, never lost.  Batch
calls that cannot be requests (`beam_search`) first let the in-flight requests finish (held).
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

    def __init__(
        self,
        engine_kind: str,
        model_path: str,
        engine_kw: dict,
        threads: int = 1,
        vllm_bind: str | None = None,
    ):
        """`threads`: torch threads while generating (rlkit.runtime.placement); `vllm_bind`:
        the CPUs a vLLM CPU engine binds its OpenMP threads to (`VLLM_CPU_OMP_THREADS_BIND`,
        read when the engine starts; a value set by the user wins)."""
        import os

        import torch

        if vllm_bind:
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", vllm_bind)
        self.threads = max(1, threads)
        torch.set_num_threads(self.threads)
        from rlkit.engines import make_rollout_engine

        self.engine = make_rollout_engine(engine_kind, model_path, **engine_kw)
        self._held: list[FinishedRequest] = []  # finished while a scoring call stepped
        self._job_ids = 0

    def run(self, new: list[SampleRequest], abort_ids: list[str], max_wait_s: float = 0.5) -> list:
        """Add `new`, abort `abort_ids`, step until something finishes or `max_wait_s` passes."""
        t0 = time.perf_counter()
        if abort_ids:
            self.engine.abort(abort_ids)
            aborted = set(abort_ids)
            self._held = [f for f in self._held if f.request_id not in aborted]
        finished, self._held = self._held, []
        beam_jobs = [r for r in new if getattr(r, "kind", "sample") == "beam"]
        new = [r for r in new if getattr(r, "kind", "sample") != "beam"]
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
        if beam_jobs:  # ReRe groups (rlkit.runtime.beam_strategy): batched, once nothing is live
            from rlkit.runtime.beam_strategy import serve_beam_jobs

            finished += self._drain()
            finished += serve_beam_jobs(self.engine, beam_jobs)
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
        """n samples per prompt, as requests of the loop (seeds offset per sample)."""
        jobs = []
        for p in prompts:
            for j in range(sampling.n):
                seed = None if sampling.seed is None else sampling.seed + j
                jobs.append((p, SamplingConfig(**{**sampling.__dict__, "n": 1, "seed": seed})))
        done = self._run_jobs(jobs)
        n = sampling.n
        return [[f.completion for f in done[i * n : (i + 1) * n]] for i in range(len(prompts))]

    def beam_search(self, prompts, num_beams: int, max_tokens: int, *args, **kw):
        self._held += self._drain()
        return self.engine.beam_search(prompts, num_beams, max_tokens, *args, **kw)

    def score(self, sequences: list[list[int]], start: list[int]) -> list[list[float]]:
        """Prefill-only logprobs of sequences[i][start[i]:], as scoring requests of the loop."""
        cfgs = [SamplingConfig(max_tokens=1, prompt_logprobs_from=s0) for s0 in start]
        return [f.completion.logprobs for f in self._run_jobs(list(zip(sequences, cfgs)))]

    def _run_jobs(self, jobs: list[tuple[list[int], SamplingConfig]]) -> list[FinishedRequest]:
        """Add `jobs` as requests and step until they finish; other requests' outputs are held
        for the next `run`.  Results in job order."""
        ids = []
        for prompt, cfg in jobs:
            self._job_ids += 1
            ids.append(f"job:{self._job_ids}")
            self.engine.add(ids[-1], list(prompt), cfg)
        mine, want = {}, set(ids)
        while len(mine) < len(ids):
            for f in self.engine.step():
                if f.request_id in want:
                    mine[f.request_id] = f
                else:
                    self._held.append(f)
        return [mine[i] for i in ids]

    def _drain(self) -> list[FinishedRequest]:
        """Let every in-flight request finish; returns their outputs."""
        outputs: list[FinishedRequest] = []
        while self.engine.num_unfinished():
            outputs += self.engine.step()
        return outputs
