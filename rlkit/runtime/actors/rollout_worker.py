"""The rollout worker: a Ray actor holding one rollout engine and serving per-sample requests.

The engine steps continuously in the worker's own loop (rlkit.runtime.actors.engine_loop): a
background thread steps it whenever it has unfinished requests, and finished requests wait in an
outbox.  The controller keeps at most one `run` call outstanding per worker; a call adds new
requests, aborts the ones that became too stale, and returns the outbox once something finished or a
short deadline passed, so the engine also generates while the controller polls rewards or trains.

The actor's methods stay single-threaded (max_concurrency 1): Ray runs them in order, so a
`load_weights` sent after a `run` takes effect between two engine steps, before any later
request is added, and every request keeps the policy version it was added under.  Every method
takes the engine from the loop (`EngineLoop.hold`), which pauses stepping for its duration.

Every request has a kind (rlkit.runtime.actors.request_kinds): sampling and prefill-only scoring
(`score`, the answer probes) are requests of the same loop; a stepped kind (a method's search,
ReRe's constrained beams) keeps its jobs in one `SteppedJobs` per worker, which the loop hands
its own finished engine requests after every step, so its rounds share engine steps with
everything else; an exclusive kind is served once the in-flight requests have finished.
Outputs of requests that finish meanwhile stay in the outbox for the next `run`, never lost.
The worker knows no kind by name but the two it builds itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rlkit.engines.rollout_protocol import FinishedRequest, SamplingConfig
from rlkit.runtime.actors.engine_loop import EngineLoop
from rlkit.runtime.actors.request_kinds import REQUEST_KINDS, SampleRequest, ScoreRequest

GRACE_S = 0.01  # after a first finish, `run` waits this long (from its start) for batch-mates


def _left(until: float) -> float:
    return max(0.0, until - time.perf_counter())


class RolloutWorker:
    """Plain class; `ray.remote(RolloutWorker)` makes the actor (runtime.placement.cluster)."""

    def __init__(
        self,
        engine_kind: str,
        model_path: str,
        engine_kw: dict,
        threads: int = 1,
        vllm_bind: str | None = None,
    ):
        """`threads`: torch threads while generating (rlkit.runtime.placement.threads), in the
        actor's thread and the engine loop's; `vllm_bind`: the CPUs a vLLM CPU engine binds its
        OpenMP threads to (`VLLM_CPU_OMP_THREADS_BIND`, read when the engine starts; a value set by
        the user wins)."""
        import os

        import torch

        if vllm_bind:
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", vllm_bind)
        threads = max(1, threads)
        torch.set_num_threads(threads)
        from rlkit.engines import make_rollout_engine

        self._start(make_rollout_engine(engine_kind, model_path, **engine_kw), threads)

    @classmethod
    def around(cls, engine, threads: int | None = None) -> RolloutWorker:
        """A worker (not an actor) around an engine that exists already (tests, tools)."""
        worker = cls.__new__(cls)
        worker._start(engine, threads)
        return worker

    def _start(self, engine, threads: int | None) -> None:
        self.threads = threads or 1
        self.engine = engine
        self._stepped: dict[str, Any] = {}  # kind name -> its SteppedJobs, made on first use
        self.loop = EngineLoop(engine, threads, route=self._route)
        self._job_ids = 0
        self._busy_read = (0.0, time.perf_counter())  # (busy_s, time) at the last `busy`

    def run(self, new: list, abort_ids: list[str], max_wait_s: float = 0.5) -> list:
        """Add `new` (requests of any registered kind), abort `abort_ids`; return the finished
        requests once one finished (after a short grace for batch-mates), the engine ran out of
        requests, or `max_wait_s` passed."""
        deadline = time.perf_counter() + max_wait_s
        grace = min(deadline, time.perf_counter() + GRACE_S)
        loop = self.loop
        with loop.hold() as engine:
            if abort_ids:
                self._abort(engine, abort_ids)
                loop.forget(abort_ids)
                loop.take(abort_ids)  # finished but not yet returned: dropped too
            self._serve(engine, new)
            loop.wait(lambda: loop.outbox or not engine.num_unfinished(), _left(deadline))
            if loop.outbox:
                loop.wait(lambda: not engine.num_unfinished(), _left(grace))
            return loop.take()

    def _serve(self, engine: Any, requests: Sequence) -> None:
        """Inside `hold`: hand each kind its requests, streaming kinds first (they start
        generating), then the exclusive ones once nothing is in flight."""
        by_kind: dict[str, list] = {}
        for req in requests:
            by_kind.setdefault(req.kind, []).append(req)
        kinds = sorted((REQUEST_KINDS[k] for k in by_kind), key=lambda k: k.exclusive)
        for kind in kinds:
            reqs = by_kind[kind.name]
            if kind.jobs is not None:
                jobs = self._stepped.setdefault(kind.name, kind.jobs())
                self.loop.added(r.request_id for r in reqs)
                self.loop.outbox += self.loop.stamp(jobs.add(engine, reqs))  # refused ones
            elif kind.exclusive:
                self.loop.wait(lambda: not engine.num_unfinished())
                started = time.time()
                with self.loop.timed():
                    self.loop.outbox += self.loop.stamp(kind.serve(engine, reqs), started)
            else:
                self.loop.added(r.request_id for r in reqs)
                self.loop.outbox += self.loop.stamp(kind.serve(engine, reqs))  # refused ones

    def _route(self, engine: Any, finished: list[FinishedRequest]) -> list[FinishedRequest]:
        """Under the loop's lock, after an engine step: each stepped kind takes its own."""
        for jobs in self._stepped.values():
            finished = jobs.route(engine, finished)
        return finished

    def _abort(self, engine: Any, ids: list[str]) -> None:
        engine.abort(ids)
        for jobs in self._stepped.values():
            jobs.abort(engine, ids)

    def num_unfinished(self) -> int:
        """Requests still generating (finished ones waiting in the outbox not counted)."""
        with self.loop.hold() as engine:
            return engine.num_unfinished()

    def busy(self) -> tuple[float, float]:
        """(seconds the engine stepped, seconds of wall time) since the previous `busy` call (or
        the worker's start): the worker's own busy fraction is their ratio.  Takes no lock."""
        now, busy = time.perf_counter(), self.loop.busy_s
        out = (busy - self._busy_read[0], now - self._busy_read[1])
        self._busy_read = (busy, now)
        return out

    def abort_all(self) -> int:
        """Drop every request in flight and every finished one not yet returned (end of a run,
        reset between runs); returns how many were in flight."""
        with self.loop.hold() as engine:
            jobs = [i for j in self._stepped.values() for i in j.pending_ids()]
            self._abort(engine, jobs)  # the stepped jobs and their own engine requests
            ids = engine.pending_ids()
            engine.abort(ids)
            self.loop.forget([*ids, *jobs])
            self.loop.wait(lambda: not engine.num_unfinished())  # the engine retires them
            self.loop.take()
        return len(ids) + len(jobs)

    def load_weights(self, weights: bytes | str, version: int) -> int:
        """New weights (safetensors bytes or a file's path on this host) between two engine
        steps; requests added from now on carry `version`."""
        with self.loop.hold() as engine:
            engine.load_weights(weights, version)
        return version

    def sleep(self) -> None:
        """GPU hybrid engine: release the GPU to the trainer (rlkit.runtime.placement.hybrid)."""
        with self.loop.hold() as engine:
            engine.sleep()

    def wake_up(self) -> None:
        with self.loop.hold() as engine:
            engine.wake_up()

    def init_nccl_sync(self, host: str, port: int, rank_offset: int, world: int) -> None:
        with self.loop.hold() as engine:
            engine.init_nccl_sync(host, port, rank_offset, world)

    def receive_nccl(self, specs: list, version: int) -> int:
        with self.loop.hold() as engine:
            engine.receive_nccl(specs, version)
        return version

    def version(self) -> int:
        with self.loop.hold() as engine:
            return engine.version

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list:
        """n samples per prompt, as requests of the loop (seeds offset per sample)."""
        reqs = []
        for p in prompts:
            for j in range(sampling.n):
                seed = None if sampling.seed is None else sampling.seed + j
                cfg = SamplingConfig(**{**sampling.__dict__, "n": 1, "seed": seed})
                reqs.append(SampleRequest(self._job_id(), list(p), cfg))
        done = self.complete(reqs)
        n = sampling.n
        return [[f.completion for f in done[i * n : (i + 1) * n]] for i in range(len(prompts))]

    def score(self, sequences: list[list[int]], start: list[int]) -> list[list[float]]:
        """Prefill-only logprobs of sequences[i][start[i]:], as scoring requests of the loop."""
        reqs = [ScoreRequest(self._job_id(), list(s), s0) for s, s0 in zip(sequences, start)]
        return [f.completion.logprobs for f in self.complete(reqs)]

    def _job_id(self) -> str:
        self._job_ids += 1
        return f"job:{self._job_ids}"

    def complete(self, requests: list) -> list[FinishedRequest]:
        """Serve `requests` (any kind) and let the loop step until they all finish, for tools and
        tests (the controller polls `run` instead); other requests' outputs stay in the outbox
        for the next `run`.  Results in request order; raises if the engine refused one."""
        ids = [r.request_id for r in requests]
        with self.loop.hold() as engine:
            self._serve(engine, requests)
            want = set(ids)
            self.loop.wait(lambda: want <= {f.request_id for f in self.loop.outbox})
            mine = {f.request_id: f for f in self.loop.take(want)}
        refused = [
            f.completion.text for f in mine.values() if f.completion.finish_reason == "error"
        ]
        if refused:
            raise RuntimeError(f"{len(refused)} of {len(ids)} job(s) refused: {refused[0]}")
        return [mine[i] for i in ids]
