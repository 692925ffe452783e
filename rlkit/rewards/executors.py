"""Where reward calls run: a worker process or a helper thread, with a per-call deadline.

Both runners expose ``run(task, timeout_s) -> Outcome`` and are used by exactly one pool slot
thread each, so they need no locking.

* :class:`ProcessRunner` owns one worker process (``rlkit.rewards.worker``). On a timeout the
  process is killed (SIGKILL: a ``while True: pass`` reward cannot ignore it) and a fresh one is
  started, so a hung reward neither blocks the pool nor leaks CPU.
* :class:`ThreadRunner` runs calls on a helper thread of the driver (cheap rewards, no pickling).
  A thread cannot be killed: on a timeout the call's result is abandoned and a new helper thread
  takes over; the hung thread is leaked (daemon) until its call returns.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import rlkit
from rlkit.rewards.invoke import format_error

Task = tuple[int, int, list[str], list[str], list[dict[str, Any]]]


@dataclass
class Outcome:
    """What one call gave: outputs (one normalized dict per sample) or an error."""

    ok: bool
    outputs: list[dict[str, Any]] | None = None
    error_type: str | None = None
    error: str | None = None
    timed_out: bool = False
    seconds: float = 0.0


def _timeout(timeout_s: float, seconds: float) -> Outcome:
    msg = f"reward call exceeded timeout_s={timeout_s:g} (killed after {seconds:.2f}s)"
    return Outcome(False, None, "Timeout", msg, True, seconds)


class ProcessRunner:
    """One reward worker process, restarted after a timeout or a crash."""

    def __init__(self, init_msg: dict[str, Any], ready_timeout_s: float = 300.0):
        self.init_msg = init_msg
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        self.broken: str | None = None  # set when a worker cannot even start
        self.restarts = 0
        self.closed = False

    def start(self) -> None:
        """Start a worker and wait until it has loaded the rewards (or record why it could not)."""
        if self.closed:
            self.broken = "pool closed"
            return
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(rlkit.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "rlkit.rewards.worker", str(to_worker_r), str(from_worker_w)]
        self.proc = subprocess.Popen(cmd, pass_fds=(to_worker_r, from_worker_w), env=env)
        os.close(to_worker_r)
        os.close(from_worker_w)
        self._send = Connection(to_worker_w, readable=False, writable=True)
        self._recv = Connection(from_worker_r, readable=True, writable=False)
        self._send.send(self.init_msg)
        if not self._recv.poll(self.ready_timeout_s):
            self.broken = f"worker did not load the rewards within {self.ready_timeout_s:g}s"
        else:
            kind, msg = self._recv.recv()
            self.broken = None if kind == "ready" else f"worker failed to load rewards: {msg}"
        if self.broken:
            self.kill()

    def run(self, task: Task, timeout_s: float) -> Outcome:
        """Send one task; wait at most ``timeout_s`` for the answer, else kill and restart."""
        if self.broken:
            return Outcome(False, None, "WorkerStartError", self.broken)
        if self.proc is None or self.proc.poll() is not None:
            self._restart()  # not started yet, or died between tasks
            if self.broken:
                return Outcome(False, None, "WorkerStartError", self.broken)
        assert self._send is not None and self._recv is not None
        start = time.monotonic()
        try:
            self._send.send(task)
            ready = self._recv.poll(timeout_s)
            reply = self._recv.recv() if ready else None
        except (EOFError, OSError) as exc:
            code = self.proc.poll() if self.proc else None
            if not self.closed:  # a pool shutting down does not respawn its workers
                self._restart()
            return Outcome(False, None, "WorkerDied", f"worker died (exit {code}): {exc!r}")
        seconds = time.monotonic() - start
        if reply is None:
            self.kill()  # the slot restarts it after delivering (see ensure_started)
            return _timeout(timeout_s, seconds)
        _, ok, outputs, error_type, error = reply
        return Outcome(ok, outputs, error_type, error, False, seconds)

    def ensure_started(self) -> None:
        """Replace a worker that was killed or died, so the next call does not wait for it."""
        if (
            not self.broken
            and not self.closed
            and (self.proc is None or self.proc.poll() is not None)
        ):
            self._restart()

    def _restart(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()

    def kill(self) -> None:
        """SIGKILL the worker (if alive) and close the pipes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        conns, self._send, self._recv = (self._send, self._recv), None, None
        for conn in conns:
            if conn is not None:
                try:
                    conn.close()
                except OSError:  # closed concurrently by the pool's close() during shutdown
                    pass

    def close(self, grace_s: float = 1.0) -> None:
        """Ask the worker to exit, kill it if it does not within ``grace_s``."""
        self.closed = True
        if self.proc is not None and self.proc.poll() is None and self._send is not None:
            try:
                self._send.send(None)
                self.proc.wait(grace_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


class _Helper(threading.Thread):
    """A daemon thread that runs invocations handed to it through a queue."""

    def __init__(self, invokers: list[Any]):
        super().__init__(daemon=True, name="rlkit-reward-thread")
        self.invokers = invokers
        self.inbox: queue.Queue[Any] = queue.Queue()

    def run(self) -> None:
        while True:
            item = self.inbox.get()
            if item is None:
                return
            task, box, done = item
            _, idx, prompts, completions, fields_list = task
            try:
                box.append(Outcome(True, self.invokers[idx](prompts, completions, fields_list)))
            except BaseException as exc:  # noqa: BLE001  the pool turns errors into fallbacks
                box.append(Outcome(False, None, type(exc).__name__, format_error(exc)))
            done.set()


class ThreadRunner:
    """Runs calls on a helper thread; abandons (and replaces) the helper on a timeout."""

    def __init__(self, invokers: list[Any]):
        self.invokers = invokers
        self.helper = self._new_helper()
        self.broken: str | None = None
        self.restarts = 0
        self.proc = None

    def _new_helper(self) -> _Helper:
        helper = _Helper(self.invokers)
        helper.start()
        return helper

    def start(self) -> None:
        """Nothing to start beyond the helper thread (kept for the runner interface)."""

    def ensure_started(self) -> None:
        """The helper is replaced inside ``run`` already (kept for the runner interface)."""

    def run(self, task: Task, timeout_s: float) -> Outcome:
        box: list[Outcome] = []
        done = threading.Event()
        start = time.monotonic()
        self.helper.inbox.put((task, box, done))
        if not done.wait(timeout_s):
            self.helper.inbox.put(None)  # let it exit if the hung call ever returns
            self.helper = self._new_helper()
            self.restarts += 1
            return _timeout(timeout_s, time.monotonic() - start)
        outcome = box[0]
        outcome.seconds = time.monotonic() - start
        return outcome

    def close(self, grace_s: float = 1.0) -> None:
        self.helper.inbox.put(None)
