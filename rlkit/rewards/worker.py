"""Reward worker process: ``python -m rlkit.rewards.worker READ_FD WRITE_FD``.

Why a fresh interpreter (spawn semantics) and not fork: the driver holds torch, Ray and NCCL
threads, and forking such a process is unsafe. The worker imports only the reward modules (never
torch unless a reward does), loads every function once, runs the warm-up hooks, then serves tasks
one at a time in its MAIN thread, so rewards relying on ``signal.alarm`` (math-verify) keep their
own timeouts. The driver enforces the per-call deadline by killing this process.

Protocol (pickled messages over two pipes, :class:`multiprocessing.connection.Connection`):
    driver -> worker: ``{"sys_path": [...], "ctx": RewardContext, "specs": [(source, batch,
                      kwargs), ...]}`` once, then
                      ``(task_id, spec_idx, prompts, completions, fields_list)`` or None (stop).
    worker -> driver: ``("ready", None)`` or ``("init_error", message)`` once, then
                      ``(task_id, ok, outputs, error_type, error_message)`` per task.
"""

from __future__ import annotations

import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from rlkit.rewards.invoke import format_error


def _load(init: dict[str, Any]) -> list[Any]:
    from rlkit.rewards.invoke import Invoker
    from rlkit.rewards.loader import resolve_reward

    for entry in reversed(init.get("sys_path", [])):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    invokers = []
    warmed: set[int] = set()
    for source, batch, kwargs in init["specs"]:
        loaded = resolve_reward(source)
        if loaded.warmup is not None and id(loaded.warmup) not in warmed:
            warmed.add(id(loaded.warmup))
            loaded.warmup()
        invokers.append(Invoker(loaded.fn, batch, kwargs, init.get("ctx")))
    return invokers


def serve(recv: Connection, send: Connection) -> None:
    """Load the rewards named in the first message, then answer tasks until None or EOF."""
    try:
        invokers = _load(recv.recv())
    except BaseException as exc:  # noqa: BLE001  report anything, incl. SystemExit on import
        send.send(("init_error", format_error(exc)))
        return
    send.send(("ready", None))
    while True:
        try:
            task = recv.recv()
        except EOFError:
            return
        if task is None:
            return
        task_id, idx, prompts, completions, fields_list = task
        try:
            outputs = invokers[idx](prompts, completions, fields_list)
            reply = (task_id, True, outputs, None, None)
        except BaseException as exc:  # noqa: BLE001  a reward's failure must not end the worker
            reply = (task_id, False, None, type(exc).__name__, format_error(exc))
        send.send(reply)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when workers stop
    recv = Connection(int(argv[0]), readable=True, writable=False)
    send = Connection(int(argv[1]), readable=False, writable=True)
    serve(recv, send)


if __name__ == "__main__":
    main(sys.argv[1:])
