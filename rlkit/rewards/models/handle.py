"""What a reward function holds: ``ctx.models["judge"].score(items) -> list[float]``.

A :class:`ModelHandle` is a small picklable address (loopback host, port, auth key) of a
:class:`~rlkit.rewards.models.gateway.ModelGateway`.  It connects lazily, one connection per
thread and process, so it works the same in the reward pool's worker processes (the handle is
pickled into them) and in its threads (``reward.mode: thread``); nothing of Ray is imported in a
reward process.  A call blocks until the gateway answers: the gateway batches it with the
requests of every other reward process, applies the model's timeout and fallback, and counts.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Client
from typing import Any

from rlkit.rewards.models.verdict import as_item


class ModelCallError(RuntimeError):
    """The gateway could not be reached or refused the request (a reward failure: fallback)."""


@dataclass(frozen=True)
class ModelHandle:
    """Client of one named scorer.  ``score`` returns one float per item (the model's fallback
    for items that timed out or did not parse: see ``reward_model/<name>/*`` metrics)."""

    name: str
    address: tuple[str, int]
    authkey: bytes = field(repr=False)

    def score(self, items: list[Any] | Any) -> list[float]:
        """Score response texts, ``(prompt, response[, answer])`` tuples or dicts with
        ``response`` (and ``prompt``, ``answer``); a single item gives a list of one."""
        if isinstance(items, (str, dict, tuple)):
            items = [items]
        payload = [as_item(v) for v in items]
        if not payload:
            return []
        conn = self._conn()
        try:
            conn.send(payload)
            ok, value = conn.recv()
        except (EOFError, OSError) as exc:
            _drop(self)
            raise ModelCallError(f"reward model {self.name!r}: gateway unreachable: {exc}") from exc
        if not ok:
            raise ModelCallError(f"reward model {self.name!r}: {value}")
        return [float(v) for v in value]

    def _conn(self) -> Any:
        key = (os.getpid(), self.name, self.address)
        conns = _local_conns()
        if key not in conns:
            conns[key] = Client(self.address, authkey=self.authkey)
        return conns[key]


@dataclass(frozen=True)
class RewardContext:
    """The ``ctx`` keyword a reward function receives when it names it: ``ctx.models`` maps the
    recipe's ``reward.models`` names to handles (empty when the recipe has none)."""

    models: dict[str, ModelHandle] = field(default_factory=dict)


_local = threading.local()


def _local_conns() -> dict:
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    return conns


def _drop(handle: ModelHandle) -> None:
    conn = _local_conns().pop((os.getpid(), handle.name, handle.address), None)
    if conn is not None:
        try:
            conn.close()
        except OSError:
            pass
