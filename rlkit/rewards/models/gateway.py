"""The gateway of one reward model: a loopback server that batches every reward process's
requests into model calls, with a timeout, a counted fallback and actor restarts.

    reward process ─┐  ModelHandle.score(items)            one batcher thread:
    reward process ─┼─> 127.0.0.1:port (authkey) ──queue──> drain up to max_batch items
    reward thread  ─┘                                       (waiting batch_wait_s for mates)
                                                            -> cache -> backend.call(batch)

The backend is what holds the model (in a run: a Ray actor, rlkit.runtime.reward_models); the
gateway knows nothing of Ray.  Per model call: past ``timeout_s`` every item of the call scores
``fallback`` (``timeouts``, ``fallbacks``); a ``None`` score (the judge's text did not parse)
scores ``fallback`` (``parse_failures``); a dead backend is restarted (at most ``max_restarts``
times per run) and the call sent again, so no request is lost to a restart.  Recent scores are
cached by (prompt, response, answer): the reward audit's re-scores and duplicate responses of a
group cost nothing and give the very same number.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Listener
from queue import Empty, SimpleQueue
from typing import Any, Protocol

from rlkit.rewards.models.handle import ModelHandle


class BackendDied(RuntimeError):
    """The process holding the model is gone (the gateway restarts it)."""


class Backend(Protocol):
    def call(self, items: list[dict[str, Any]], timeout_s: float) -> list[float | None]:
        """Scores of ``items``; raises TimeoutError past ``timeout_s``, BackendDied if dead."""
        ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Request:
    items: list[dict[str, Any]]
    t0: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    scores: list[float] = field(default_factory=list)


class ModelStats:
    """Counters of one model since the last snapshot (``restarts``: since the start)."""

    KEYS = ("requests", "items", "batches", "batch_items", "latency_s", "timeouts", "fallbacks",
            "parse_failures", "errors", "cache_hits", "score_sum", "scored")  # fmt: skip

    def __init__(self, name: str):
        self.name, self.lock, self.restarts = name, threading.Lock(), 0
        self.c = dict.fromkeys(self.KEYS, 0.0)

    def add(self, **kw: float) -> None:
        with self.lock:
            for k, v in kw.items():
                self.c[k] += v

    def snapshot(self, reset: bool = True) -> dict[str, float]:
        with self.lock:
            c = dict(self.c)
            if reset:
                self.c = dict.fromkeys(self.KEYS, 0.0)
        p = f"reward_model/{self.name}/"
        out = {p + k: c[k] for k in ("requests", "items", "batches", "timeouts", "fallbacks",
                                      "parse_failures", "errors", "cache_hits")}  # fmt: skip
        out[p + "batch_size"] = c["batch_items"] / c["batches"] if c["batches"] else 0.0
        out[p + "latency_s"] = c["latency_s"] / c["requests"] if c["requests"] else 0.0
        out[p + "score_mean"] = c["score_sum"] / c["scored"] if c["scored"] else 0.0
        out[p + "restarts"] = float(self.restarts)
        return out


class ModelGateway:
    """Serves one named model to every reward process (see the module docstring)."""

    def __init__(
        self,
        name: str,
        backend: Backend,
        *,
        max_batch: int = 32,
        batch_wait_s: float = 0.01,
        timeout_s: float = 30.0,
        fallback: float = 0.0,
        max_restarts: int = 3,
        cache_size: int = 4096,
        log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    ):
        self.name, self.backend, self.log = name, backend, log
        self.max_batch, self.batch_wait_s = max_batch, batch_wait_s
        self.timeout_s, self.fallback, self.max_restarts = timeout_s, fallback, max_restarts
        self.cache: OrderedDict[tuple, float] = OrderedDict()
        self.cache_size = cache_size
        self.stats = ModelStats(name)
        self.batch_log: list[int] = []  # items per model call (tests, benchmarks)
        self._queue: SimpleQueue[_Request | None] = SimpleQueue()
        self._authkey = os.urandom(16)
        # a deep backlog: every reward worker connects at once at the start (backlog 1, the
        # default, drops their handshakes under load and they retry for seconds)
        self._listener = Listener(("127.0.0.1", 0), backlog=256, authkey=self._authkey)
        self._closed = False
        for target in (self._accept, self._batcher):
            threading.Thread(target=target, daemon=True, name=f"rlkit-rm-{name}").start()

    @property
    def handle(self) -> ModelHandle:
        return ModelHandle(self.name, tuple(self._listener.address), self._authkey)

    # ---- serving connections ----
    def _accept(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
            except Exception:  # noqa: BLE001  closed, or a client that failed the auth handshake
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        with conn:
            while True:
                try:
                    items = conn.recv()
                except (EOFError, OSError):
                    return
                conn.send(self.submit(items))

    def submit(self, items: list[dict[str, Any]]) -> tuple[bool, Any]:
        """Queue one request and wait for it: (True, scores) or (False, why)."""
        if self._closed:
            return False, "gateway closed"
        req = _Request(list(items))
        self._queue.put(req)
        req.done.wait()
        if len(req.scores) != len(req.items):
            return False, "gateway closed"
        return True, req.scores

    # ---- batching ----
    def _batcher(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, n = [first], len(first.items)
            until = time.perf_counter() + self.batch_wait_s
            while n < self.max_batch:
                try:
                    req = self._queue.get(timeout=max(0.0, until - time.perf_counter()))
                except Empty:
                    break
                if req is None:
                    self._queue.put(None)
                    break
                batch.append(req)
                n += len(req.items)
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        keys = [_key(it) for req in batch for it in req.items]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        got = {k: self.cache[k] for k in keys if k in self.cache}
        for start in range(0, len(todo), self.max_batch):
            part = todo[start : start + self.max_batch]
            got.update(zip(part, self._call(part), strict=True))
        now, i = time.perf_counter(), 0
        for req in batch:
            req.scores = [got[k] for k in keys[i : i + len(req.items)]]
            i += len(req.items)
            self.stats.add(requests=1, items=len(req.items), latency_s=now - req.t0)
            req.done.set()
        self.stats.add(cache_hits=len(keys) - len(todo))

    def _call(self, keys: list[tuple]) -> list[float]:
        """One model call on the items of ``keys``: scores, or the fallback for every item
        (counted)."""
        items, n = [dict(k) for k in keys], len(keys)
        self.batch_log.append(n)
        self.stats.add(batches=1, batch_items=n)
        try:
            raw = self._call_with_restarts(items)
        except TimeoutError:
            self.stats.add(timeouts=n, fallbacks=n)
            return [self.fallback] * n
        except Exception as exc:  # noqa: BLE001  a model error fails these items, not the run
            self.stats.add(errors=n, fallbacks=n)
            self.log(f"[rlkit] reward model {self.name!r} failed a call: {exc}")
            return [self.fallback] * n
        out = []
        for k, v in zip(keys, raw, strict=True):
            if v is None:
                self.stats.add(parse_failures=1, fallbacks=1)
                out.append(self.fallback)
                continue
            self._remember(k, float(v))
            self.stats.add(score_sum=float(v), scored=1)
            out.append(float(v))
        return out

    def _call_with_restarts(self, items: list[dict[str, Any]]) -> list[float | None]:
        while True:
            try:
                return self.backend.call(items, self.timeout_s)
            except BackendDied as exc:
                if self.stats.restarts >= self.max_restarts:
                    raise RuntimeError(
                        f"died ({exc}); {self.stats.restarts} restart(s) done, max_restarts = "
                        f"{self.max_restarts}"
                    ) from exc
                self.stats.restarts += 1
                t0 = time.perf_counter()
                self.backend.restart()
                self.log(
                    f"[rlkit] reward model {self.name!r} died ({exc}); restarted in "
                    f"{time.perf_counter() - t0:.1f}s (restart {self.stats.restarts} of at "
                    f"most {self.max_restarts}); its call is sent again"
                )

    def _remember(self, key: tuple, value: float) -> None:
        if self.cache_size <= 0:
            return
        self.cache[key] = value
        self.cache.move_to_end(key)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def metrics(self, reset: bool = True) -> dict[str, float]:
        return self.stats.snapshot(reset)

    def close(self) -> None:
        """Stop serving (queued requests are answered with an error) and close the backend."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        try:
            self._listener.close()
        except OSError:
            pass
        while True:
            try:
                req = self._queue.get_nowait()
            except Empty:
                break
            if req is not None:
                req.done.set()
        self.backend.close()


def _key(item: dict[str, Any]) -> tuple:
    return tuple(sorted((k, v if isinstance(v, (str, int, float)) else repr(v))
                        for k, v in item.items()))  # fmt: skip
