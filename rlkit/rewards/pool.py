"""RewardPool: score samples with a recipe's reward functions, asynchronously and safely.

The controller calls :meth:`RewardPool.submit` the moment a sample finishes (queue scheduling,
algorithms.md section 2: rewards are computed per sample, not per batch) and gets a Future.
Each (sample, function) pair is one task on a shared FIFO queue served by ``num_workers`` slots.
A slot owns one runner (a worker process, or a helper thread in ``mode="thread"``) and enforces
``timeout_s`` per call. A failure of any kind becomes the ``fallback`` score for that function,
is counted in :meth:`metrics`, logged once per (function, error type), and never raises into the
caller: the returned :class:`RewardResult` has ``failed=True`` and an ``error`` string instead.

Process workers start with the pool (in the background, see :meth:`wait_ready`) and live for the
pool's life, so start-up is paid once, not per call; a worker is replaced only after it timed out
or crashed. Batch functions get one call per :meth:`score_batch` (lists of length 1 via submit).
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any

from rlkit.rewards.combine import Part, combine
from rlkit.rewards.executors import Outcome, ProcessRunner, ThreadRunner
from rlkit.rewards.invoke import Invoker
from rlkit.rewards.loader import LoadedReward, resolve_reward
from rlkit.rewards.models.handle import RewardContext
from rlkit.rewards.stats import RewardStats
from rlkit.rewards.types import RewardResult, RewardSpec

MODES = ("process", "thread")


class _Gather:
    """Collects one Part per function for one sample, then resolves the sample's Future."""

    def __init__(self, pool: RewardPool):
        self.pool = pool
        self.parts: list[Part | None] = [None] * len(pool.specs)
        self.left = len(pool.specs)
        self.lock = threading.Lock()
        self.future: Future[RewardResult] = Future()

    def put(self, idx: int, part: Part) -> None:
        with self.lock:
            self.parts[idx] = part
            self.left -= 1
            if self.left:
                return
        parts = [p for p in self.parts if p is not None]
        result = combine(self.pool.names, self.pool.weights, parts, self.pool.fallback)
        self.pool.stats.record_result(result)
        self.future.set_result(result)


class RewardPool:
    """Scores (prompt, completion, fields) samples with weighted reward functions.

    Args:
        specs: RewardSpec objects, recipe dicts ``{fn, weight, name, kwargs}`` or spec strings.
        timeout_s: deadline of one function call (the call of one batch function on a batch).
        fallback: score given to a function that failed or timed out (before weighting).
        num_workers: calls that run concurrently (processes or threads).
        mode: ``"process"`` (isolated, killable workers) or ``"thread"`` (cheap in-process
            rewards; a hung thread cannot be killed, only abandoned).
        ready_timeout_s: how long a worker may take to import and warm up the rewards.
        models: the run's reward models (``rlkit.runtime.reward_models.RewardModels``, or any
            object with ``handles: dict[str, ModelHandle]`` and ``metrics(reset)``): functions
            naming a ``ctx`` parameter get ``ctx.models``; their metrics join :meth:`metrics`.
    """

    def __init__(
        self,
        specs: list[RewardSpec | dict[str, Any] | str],
        *,
        timeout_s: float = 10.0,
        fallback: float = 0.0,
        num_workers: int = 2,
        mode: str = "process",
        ready_timeout_s: float = 300.0,
        models: Any = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not specs:
            raise ValueError("RewardPool needs at least one reward spec")
        if num_workers < 1 or timeout_s <= 0:
            raise ValueError("num_workers must be >= 1 and timeout_s > 0")
        self.specs = [RewardSpec.coerce(s) for s in specs]
        self.loaded = [resolve_reward(s.fn) for s in self.specs]
        self.names = _unique_names(self.specs, self.loaded)
        self.weights = [float(s.weight) for s in self.specs]
        self.timeout_s, self.fallback, self.mode = float(timeout_s), float(fallback), mode
        self.models = models
        self.ctx = RewardContext(dict(models.handles) if models is not None else {})
        self.stats = RewardStats(self.fallback)
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._closed = False
        self._task_ids = iter(range(1 << 62))
        self._runners = [self._make_runner() for _ in range(num_workers)]
        for runner in self._runners:
            runner.ready_timeout_s = ready_timeout_s
        self._ready = [threading.Event() for _ in self._runners]
        self._threads = [
            threading.Thread(target=self._slot, args=(i,), daemon=True, name=f"rlkit-reward-{i}")
            for i in range(num_workers)
        ]
        for thread in self._threads:
            thread.start()

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> RewardPool:
        """Build from a recipe's ``reward:`` section (``fns`` list plus pool options)."""
        cfg = dict(cfg)
        if "fns" not in cfg:
            raise ValueError(f"reward config needs 'fns' (a list of {{fn, weight}}), got {cfg}")
        fns = cfg.pop("fns")
        allowed = {"timeout_s", "fallback", "num_workers", "mode", "ready_timeout_s"}
        unknown = set(cfg) - allowed
        if unknown:
            raise ValueError(f"unknown reward config keys {sorted(unknown)}; allowed: {allowed}")
        return cls(list(fns), **cfg)

    def _make_runner(self) -> ProcessRunner | ThreadRunner:
        if self.mode == "thread":
            return ThreadRunner(
                [
                    Invoker(lr.fn, lr.batch, s.kwargs, self.ctx)
                    for lr, s in zip(self.loaded, self.specs, strict=True)
                ]
            )
        for spec, lr in zip(self.specs, self.loaded, strict=True):
            if lr.source is None:
                raise ValueError(
                    f"reward {spec.fn!r} is defined in __main__ or a local scope, which a worker "
                    "process cannot import: move it to a module/file or use mode='thread'"
                )
        init = {
            "sys_path": list(sys.path),
            "ctx": self.ctx,
            "specs": [
                (lr.source, lr.batch, s.kwargs)
                for lr, s in zip(self.loaded, self.specs, strict=True)
            ],
        }
        return ProcessRunner(init)

    def _slot(self, i: int) -> None:
        runner = self._runners[i]
        try:
            runner.start()
        except Exception as exc:  # noqa: BLE001  every task of this slot will report it
            runner.broken = f"worker start failed: {type(exc).__name__}: {exc}"
        self._ready[i].set()
        while True:
            item = self._queue.get()
            if item is None:
                return
            task, idx, gathers = item
            try:
                outcome = runner.run(task, self.timeout_s)
            except Exception as exc:  # noqa: BLE001  e.g. unpicklable fields: fail the task only
                outcome = Outcome(False, None, type(exc).__name__, f"{type(exc).__name__}: {exc}")
            self.stats.record_call(self.names[idx], outcome, task)
            _deliver(idx, outcome, gathers)
            if not outcome.ok:
                runner.ensure_started()

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Block until every worker has loaded the rewards; False if ``timeout_s`` ran out."""
        return all(event.wait(timeout_s) for event in self._ready)

    def submit(
        self, prompt: str, completion: str, fields: dict[str, Any] | None = None
    ) -> Future[RewardResult]:
        """Queue one sample; the Future resolves to its RewardResult (never to an exception)."""
        return self._enqueue([prompt], [completion], [dict(fields or {})])[0]

    def submit_many(
        self, prompts: list[str], completions: list[str], fields_list: list[dict[str, Any]]
    ) -> list[Future[RewardResult]]:
        """Queue several samples at once (batch functions see them in one call: a group-level
        reward); one Future per sample."""
        return self._enqueue(list(prompts), list(completions), [dict(f) for f in fields_list])

    def score_batch(
        self,
        prompts: list[str],
        completions: list[str],
        fields_list: list[dict[str, Any]] | None = None,
    ) -> list[RewardResult]:
        """Score a batch and wait; batch functions see the whole batch in one call."""
        if fields_list is None:
            fields_list = [{} for _ in prompts]
        if not len(prompts) == len(completions) == len(fields_list):
            raise ValueError("prompts, completions and fields_list must have the same length")
        if not prompts:
            return []
        futures = self._enqueue(list(prompts), list(completions), [dict(f) for f in fields_list])
        return [f.result() for f in futures]

    def _enqueue(
        self, prompts: list[str], completions: list[str], fields_list: list[dict[str, Any]]
    ) -> list[Future[RewardResult]]:
        if self._closed:
            raise RuntimeError("RewardPool is closed")
        gathers = [_Gather(self) for _ in prompts]
        for idx, lr in enumerate(self.loaded):
            if lr.batch:
                task = (next(self._task_ids), idx, prompts, completions, fields_list)
                self._queue.put((task, idx, gathers))
                continue
            for j, gather in enumerate(gathers):
                task = (next(self._task_ids), idx, prompts[j : j + 1], completions[j : j + 1],
                        fields_list[j : j + 1])  # fmt: skip
                self._queue.put((task, idx, [gather]))
        return [g.future for g in gathers]

    def metrics(self, reset: bool = True) -> dict[str, float]:
        """Reward metrics since the last reset (see :mod:`rlkit.rewards.stats` for the names)."""
        out = self.stats.snapshot(reset=reset)
        out["reward/worker_restarts"] = float(sum(r.restarts for r in self._runners))
        if self.models is not None:
            out.update(self.models.metrics(reset=reset))
        return out

    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (empty in thread mode); for tests and debugging."""
        return [r.proc.pid for r in self._runners if r.proc is not None and r.proc.poll() is None]

    def close(self) -> None:
        """Fail queued tasks with "pool closed", stop the slots and end the workers."""
        if self._closed:
            return
        self._closed = True
        while not self._queue.empty():
            item = self._queue.get()
            if item is not None:
                _deliver(item[1], Outcome(False, None, "PoolClosed", "pool closed"), item[2])
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=0.5)
        for runner in self._runners:
            runner.close()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s)

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  interpreter shutdown: best effort only
            pass


def _deliver(idx: int, outcome: Outcome, gathers: list[_Gather]) -> None:
    if outcome.ok and outcome.outputs is not None:
        for gather, output in zip(gathers, outcome.outputs, strict=True):
            gather.put(idx, Part(True, output))
        return
    for gather in gathers:
        gather.put(idx, Part(False, None, outcome.error or outcome.error_type))


def _unique_names(specs: list[RewardSpec], loaded: list[LoadedReward]) -> list[str]:
    names: list[str] = []
    for spec, lr in zip(specs, loaded, strict=True):
        base = spec.name or lr.name
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names
