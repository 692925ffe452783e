"""Environment calls off the controller thread: a bounded pool with per-call timeouts.

The controller thread only submits calls and polls for results, so one slow or hung environment
never stalls the rollout of other groups (issue 19, point 4).  Plain functions run on a fixed
number of daemon threads; `async def` ones on one event loop in its own thread (a timeout
cancels the coroutine).  A plain call cannot be killed: when it times out its thread is written
off and a fresh one takes its place, so the pool keeps its size; daemon threads never hold up
the process's exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import inspect
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class CallDone:
    """A finished call: its key, value or error, whether it timed out, and its latency."""

    key: Any
    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    latency_s: float = 0.0


class _ThreadPool:
    """`size` daemon threads taking jobs from one queue; `replace()` adds a thread for one that
    hangs in a call."""

    def __init__(self, size: int):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.size, self.started = size, False  # threads start with the first job

    def replace(self) -> None:
        threading.Thread(target=self._work, daemon=True, name="rlkit-env").start()

    def _work(self) -> None:
        while True:
            fut, fn, args = self.jobs.get()
            if not fut.set_running_or_notify_cancel():
                continue
            fut.started_at = time.perf_counter()  # the timeout counts from here, not the queue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 (an environment's error is a result)
                fut.set_exception(exc)

    def submit(self, fn: Callable, *args: Any) -> cf.Future:
        if not self.started:
            self.started = True
            for _ in range(self.size):
                self.replace()
        fut: cf.Future = cf.Future()
        self.jobs.put((fut, fn, args))
        return fut


class EnvRunner:
    """Runs environment calls (`reset`, `step`) with at most `timeout_s` each."""

    def __init__(self, max_workers: int = 8, timeout_s: float = 30.0):
        if max_workers < 1 or timeout_s <= 0:
            raise ValueError("env_workers must be >= 1 and env_timeout_s > 0")
        self.timeout_s = timeout_s
        self.threads = _ThreadPool(max_workers)
        self._loop: asyncio.AbstractEventLoop | None = None
        # id(future) -> (key, future, submitted at, is_thread)
        self.pending: dict[int, tuple[Any, cf.Future, float, bool]] = {}
        self.written_off = 0  # hung plain calls whose thread was replaced

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(
                target=self._loop.run_forever, daemon=True, name="rlkit-env-aio"
            ).start()
        return self._loop

    def submit(self, key: Any, fn: Callable, *args: Any) -> None:
        """Start `fn(*args)`; its outcome comes back from `poll` with `key`."""
        is_thread = not inspect.iscoroutinefunction(fn)
        if is_thread:
            fut = self.threads.submit(fn, *args)
        else:
            fut = asyncio.run_coroutine_threadsafe(fn(*args), self._event_loop())
        self.pending[id(fut)] = (key, fut, time.perf_counter(), is_thread)

    def poll(self) -> list[CallDone]:
        """Calls that finished, failed or ran past their timeout since the last poll."""
        out, now = [], time.perf_counter()
        for fid, (key, fut, submitted, is_thread) in list(self.pending.items()):
            started = getattr(fut, "started_at", submitted)
            if fut.done():
                del self.pending[fid]
                err = fut.exception() if not fut.cancelled() else cf.CancelledError()
                value = None if err else fut.result()
                out.append(CallDone(key, value, err, latency_s=now - started))
            elif is_thread and not fut.running():
                continue  # still queued behind other calls: its time has not started
            elif now > started + self.timeout_s:
                del self.pending[fid]
                if not fut.cancel() and is_thread:  # running in a thread: write it off
                    self.written_off += 1
                    self.threads.replace()
                out.append(CallDone(key, timed_out=True, latency_s=now - started))
        return out

    def wait(self, timeout_s: float) -> None:
        """Block until some call finished or `timeout_s` passed."""
        if self.pending:
            futs = [p[1] for p in self.pending.values()]
            cf.wait(futs, timeout=timeout_s, return_when=cf.FIRST_COMPLETED)
