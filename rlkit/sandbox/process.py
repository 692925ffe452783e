"""Running the bubblewrap command: capped output, a wall-clock deadline, nothing left behind.

The deadline kills the sandbox's PID 1 (bwrap's reaper; bwrap reports its host pid on
`--info-fd` at start, and a pidfd taken then makes the kill immune to pid reuse): when a PID
namespace's first process dies the kernel kills and reaps every other process in it before that
process is reaped, so once bwrap (its parent) has exited, nothing of the run remains, whatever
it forked, `setsid`ed or double-forked. bwrap's own process group is killed too, and
`--die-with-parent` covers the caller dying mid-run.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from typing import Any

from rlkit.sandbox.result import SandboxResult

MAX_OUTPUT_BYTES = 1 << 20  # per stream; past it the run is ended and marked truncated
_GRACE_S = 2.0  # after a kill: how long to wait for bwrap and the pipes to close


def _stdin_fd(data: str) -> int:
    """A sealed in-memory file holding `data`, positioned at its start (no pipe to keep fed)."""
    fd = os.memfd_create("rlkit-sandbox-stdin", os.MFD_CLOEXEC)
    os.write(fd, data.encode("utf-8"))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _spawn(argv: list[str], env: dict[str, str], stdin: str, uid: int | None):
    """Start bwrap with `--info-fd` added; returns (process, read end of the info pipe)."""
    info_r, info_w = os.pipe()
    argv = [argv[0], "--info-fd", str(info_w), *argv[1:]]
    stdin_fd = _stdin_fd(stdin) if stdin else subprocess.DEVNULL
    user: dict[str, Any] = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
    try:
        proc = subprocess.Popen(
            argv,
            stdin=stdin_fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            pass_fds=(info_w,),
            start_new_session=True,
            **user,
        )
    finally:
        os.close(info_w)
        if stdin:
            os.close(stdin_fd)
    return proc, info_r


def _sandbox_pidfd(info_r: int, deadline: float) -> int | None:
    """A pidfd of the sandbox's PID 1, from bwrap's info JSON (None if bwrap failed first).

    bwrap writes the JSON and closes the pipe right after starting that process, so this
    waits only for bwrap's setup (milliseconds), bounded by `deadline` all the same.
    """
    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(info_r, selectors.EVENT_READ)
        while sel.select(max(deadline - time.monotonic(), 0.0)):
            chunk = os.read(info_r, 4096)
            if not chunk:
                break
            data += chunk
    try:
        return os.pidfd_open(int(json.loads(data.decode())["child-pid"]))
    except (ValueError, KeyError, TypeError, ProcessLookupError):
        return None


def _kill(proc: subprocess.Popen, pidfd: int | None) -> None:
    """Kill the whole sandbox and wait (bounded) until bwrap is gone."""
    if pidfd is not None:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:  # it had just ended by itself
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=_GRACE_S)
    except subprocess.TimeoutExpired:  # never seen; the caller still gets its answer in time
        pass


class _Capture:
    """Reads stdout and stderr into buffers capped at `MAX_OUTPUT_BYTES` each."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.sel = selectors.DefaultSelector()
        self.bufs: dict[int, bytearray] = {}
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
            self.sel.register(stream.fileno(), selectors.EVENT_READ)
            self.bufs[stream.fileno()] = bytearray()
        self.order = [proc.stdout.fileno(), proc.stderr.fileno()]  # type: ignore[union-attr]
        self.over = False

    def open(self) -> bool:
        return bool(self.sel.get_map())

    def pump(self, timeout: float) -> None:
        """Read what is ready within `timeout` s; close streams at EOF; flag output over the cap."""
        for key, _ in self.sel.select(max(timeout, 0.0)):
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self.sel.unregister(key.fd)
                continue
            buf = self.bufs[key.fd]
            room = MAX_OUTPUT_BYTES - len(buf)
            buf += chunk[: max(room, 0)]
            self.over = self.over or len(chunk) > room

    def texts(self, truncated: bool) -> tuple[str, str]:
        out = [self.bufs[fd].decode("utf-8", errors="replace") for fd in self.order]
        if truncated:
            mark = f"\n[rlkit.sandbox: output truncated at {MAX_OUTPUT_BYTES} bytes]\n"
            out = [
                t + mark if len(self.bufs[fd]) >= MAX_OUTPUT_BYTES else t
                for t, fd in zip(out, self.order, strict=True)
            ]
        return out[0], out[1]

    def close(self) -> None:
        self.sel.close()


def run_bwrap(
    argv: list[str], *, env: dict[str, str], stdin: str, uid: int | None, timeout_s: float
) -> SandboxResult:
    """Run `argv` (a bwrap command) to its end, its deadline or its output cap."""
    start = time.monotonic()
    deadline = start + timeout_s
    proc, info_r = _spawn(argv, env, stdin, uid)
    capture = _Capture(proc)
    timed_out = False
    pidfd = None
    try:
        pidfd = _sandbox_pidfd(info_r, deadline)
        while capture.open() and not capture.over and time.monotonic() < deadline:
            capture.pump(deadline - time.monotonic())
        if capture.over:
            _kill(proc, pidfd)
        else:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill(proc, pidfd)
        end = time.monotonic() + _GRACE_S
        while capture.open() and time.monotonic() < end:  # what was written before the end
            capture.pump(end - time.monotonic())
    finally:
        capture.close()
        os.close(info_r)
        if pidfd is not None:
            os.close(pidfd)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if proc.returncode is None:
            _kill_quietly(proc)
    stdout, stderr = capture.texts(capture.over)
    ended = timed_out or capture.over
    return SandboxResult(
        stdout=stdout,
        stderr=stderr,
        exit_code=None if ended else proc.returncode,
        timed_out=timed_out,
        truncated=capture.over,
        duration_s=time.monotonic() - start,
    )


def _kill_quietly(proc: subprocess.Popen) -> None:
    """Last resort on an unexpected error: kill bwrap's group and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
