"""The rollout worker's continuous engine loop: a background thread steps the engine whenever it
has unfinished requests, so generation goes on while the controller polls rewards or trains.

One `threading.Condition` guards the engine and the outbox; every engine access takes it.  The
worker's Ray methods stay single-threaded (Ray keeps their order: a `load_weights` sent before
a `run` takes effect before that run's requests are added) and take the engine through `hold`,
which has priority over the stepping thread: the thread yields between two engine steps to a
waiting method, so a method waits at most one step.  Finished requests go to `outbox` until a
method takes them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any


class EngineLoopFailed(RuntimeError):
    """The engine raised while the loop stepped it; the worker's next call reports it."""


class EngineLoop:
    """Steps `engine` (add/step/abort/num_unfinished interface) in a daemon thread."""

    def __init__(
        self,
        engine: Any,
        threads: int | None = None,
        idle_poll_s: float = 1.0,
        route: Callable[[Any, list], list] | None = None,
    ):
        """`threads`: torch threads of the stepping thread (the worker's own count, from
        rlkit.runtime.placement.threads); `idle_poll_s`: how often an idle loop looks again without
        being woken (methods wake it when they release the engine); `route(engine, finished)`:
        what becomes of each step's finished requests before they reach the outbox (the worker's
        stepped kinds take their own, rlkit.runtime.actors.request_kinds)."""
        self.engine = engine
        self.route = route
        self.cond = threading.Condition()
        self.outbox: list = []  # FinishedRequest, in finishing order
        self.busy_s = 0.0  # seconds spent stepping (and in jobs run under `hold`, see `timed`)
        self._added: dict[str, float] = {}  # request id -> wall time it was added (timeline)
        self.error: BaseException | None = None
        self._want = 0  # methods waiting for the engine
        self._want_lock = threading.Lock()
        self._stepped = threading.Event()  # set after a step that finished something
        self._waiting = 0  # methods inside `wait`
        self._stop = False
        self._idle_poll_s = idle_poll_s
        self._thread = threading.Thread(
            target=self._run, args=(threads,), name="engine-loop", daemon=True
        )
        self._thread.start()

    @contextmanager
    def hold(self) -> Iterator[Any]:
        """The engine, for the caller alone (the loop pauses after its current step).  Not
        re-entrant: `wait` must be able to hand the lock to the loop."""
        self._acquire()
        try:
            self._raise_if_failed()
            yield self.engine
        finally:
            self.cond.notify_all()  # new requests to step, or the loop may resume
            self.cond.release()

    def wait(self, done: Callable[[], Any], timeout: float | None = None) -> bool:
        """Inside `hold`: let the loop step until `done()` (checked under the lock) or `timeout`
        seconds pass; returns whether `done()` held.  After each step that finished something
        the loop waits for the caller to look (and take the lock back) before stepping on."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not done():
            left = self._idle_poll_s if deadline is None else deadline - time.perf_counter()
            if left <= 0:
                return False
            self._stepped.clear()  # under the lock: no step can be missed
            self._waiting += 1
            self.cond.notify_all()
            self.cond.release()
            try:
                self._stepped.wait(min(left, self._idle_poll_s))
            finally:
                self._acquire()
                self._waiting -= 1
            self._raise_if_failed()
        return True

    def take(self, ids: Iterable[str] | None = None) -> list:
        """Inside `hold`: remove and return the outbox (only the requests `ids` when given)."""
        if ids is None:
            out, self.outbox = self.outbox, []
            return out
        want = set(ids)
        out = [f for f in self.outbox if f.request_id in want]
        self.outbox = [f for f in self.outbox if f.request_id not in want]
        return out

    def added(self, ids: Iterable[str]) -> None:
        """Inside `hold`: requests `ids` were just added to the engine.  Each finished request
        is stamped with this time and its finishing step's (`started_s`, `ended_s`)."""
        self._added.update(dict.fromkeys(ids, time.time()))

    def forget(self, ids: Iterable[str]) -> None:
        """Inside `hold`: requests `ids` were aborted: they will never be stamped."""
        for i in ids:
            self._added.pop(i, None)

    def stamp(self, finished: list, started: float | None = None) -> list:
        """Set `started_s` (when added; else `started`) and `ended_s` (now) of `finished`."""
        now = time.time()
        for f in finished:
            f.started_s = self._added.pop(f.request_id, started if started is not None else now)
            f.ended_s = now
        return finished

    @contextmanager
    def timed(self) -> Iterator[None]:
        """Count engine work a method does itself (an exclusive request kind) as busy time."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.busy_s += time.perf_counter() - t0

    def close(self) -> None:
        """Stop the thread after its current step."""
        with self.cond:
            self._stop = True
            self.cond.notify_all()
        self._thread.join(timeout=30)

    def _acquire(self) -> None:
        """Take the lock ahead of the loop: it does not start another step while `_want`."""
        with self._want_lock:
            self._want += 1
        try:
            self.cond.acquire()
        finally:
            with self._want_lock:
                self._want -= 1

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise EngineLoopFailed(f"the engine loop stopped: {self.error!r}") from self.error

    def _runnable(self) -> bool:
        """Under the lock: step now (no method waiting, engine healthy, requests in flight)."""
        return not self._want and self.error is None and bool(self.engine.num_unfinished())

    def _run(self, threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)  # per thread under OpenMP: the actor's count
        with self.cond:
            while not self._stop:
                if not self._runnable():
                    self.cond.wait(self._idle_poll_s)
                    continue
                t0 = time.perf_counter()
                try:
                    finished = self.engine.step()
                    if self.route is not None:
                        finished = self.route(self.engine, finished)
                except Exception as exc:  # reported by the next method call
                    self.error = exc
                    finished = []
                self.busy_s += time.perf_counter() - t0
                self.outbox.extend(self.stamp(finished))
                if finished or self.error is not None or not self.engine.num_unfinished():
                    self._stepped.set()
                    if self._waiting:  # a method in `wait` looks before the next step
                        self.cond.wait(self._idle_poll_s)
