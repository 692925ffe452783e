"""The run's request timeline: `runs/NAME/timeline.jsonl`, one JSON row per rollout request,
trainer step and weight publish, for `rlkit view` (docs/viewer.md, "Timeline").

Rows (times are wall-clock seconds, `time.time()`, on the machine that stamped them):

    {"kind": "request", "request": "12:3", "group": 12, "sample": 3, "worker": 0,
     "start": ..., "end": ..., "version": 4, "finish": "stop", "tokens": 57, "aborted": false}
    {"kind": "train", "step": 5, "start": ..., "end": ...}      credit + trainer step
    {"kind": "publish", "step": 5, "start": ..., "end": ...}    weights sent to the workers

A request's `start` / `end` are when its worker added it to the engine and when the engine
step that finished it returned (`FinishedRequest.started_s` / `ended_s`, stamped by the worker's
engine loop); `version` the policy version it started under.  A request aborted as too stale
ends when the controller sent the abort and starts when the controller sent the request (the
worker never reports it back), with `aborted: true`.  Multi-turn trajectories have one row per
model turn.  A train row spans from the controller handing the batch over to the step's result
being ready.

Everything here runs on the controller thread, except the train-end time, which a future's
done-callback sets.  The file is appended line by line, so a resumed run continues it (rows of
steps after the checkpoint that the killed run wrote stay in it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from rlkit.runtime.controller.strategies import parse_request_id

FILE_NAME = "timeline.jsonl"


class RequestTimeline:
    """Collects timeline rows and appends them to `run_dir/timeline.jsonl` (nothing is written
    when `run_dir` is None)."""

    def __init__(self, run_dir: str | Path | None):
        self.path = None if run_dir is None else Path(run_dir) / FILE_NAME
        # request id -> (when the controller sent it, the workers' policy version then)
        self._sent: dict[str, tuple[float, int]] = {}
        self._train: dict[int, list[float]] = {}  # step -> [start, end (0 until done)]
        self._rows: list[dict[str, Any]] = []

    def sent(self, requests: Iterable[Any], version: int) -> None:
        """Requests handed to a worker's `run` call, whose weights are at `version` (their
        start and version if they are aborted)."""
        now = time.time()
        for r in requests:
            self._sent[r.request_id] = (now, version)

    def finished(self, worker: int, finished: Iterable[Any]) -> None:
        """Finished requests a worker returned (rollout requests only: "<group>:<sample>...")."""
        now = time.time()
        for f in finished:
            sent, _ = self._sent.pop(f.request_id, (None, None))
            try:
                group, sample = parse_request_id(f.request_id)
            except ValueError:
                continue  # not a rollout request
            c = f.completion
            start = f.started_s if f.started_s is not None else sent
            self._rows.append(
                {
                    "kind": "request",
                    "request": f.request_id,
                    "group": group,
                    "sample": sample,
                    "worker": worker,
                    "start": now if start is None else start,
                    "end": f.ended_s if f.ended_s is not None else now,
                    "version": f.start_version,
                    "finish": c.finish_reason,
                    "tokens": len(c.token_ids),
                    "aborted": c.finish_reason == "abort",
                }
            )

    def aborted(self, worker: int, ids: Iterable[str]) -> None:
        """Requests the controller aborts on `worker` (too stale)."""
        now = time.time()
        for rid in ids:
            group, sample = parse_request_id(rid)
            start, version = self._sent.pop(rid, (now, None))
            row = {"kind": "request", "request": rid, "group": group, "sample": sample}
            row |= {"worker": worker, "start": start, "end": now, "version": version}
            self._rows.append(row | {"finish": "abort", "tokens": 0, "aborted": True})

    def train_started(self, step: int, future: Future) -> None:
        """Step `step`'s credit + train job was submitted as `future`."""
        span = self._train[step] = [time.time(), 0.0]
        future.add_done_callback(lambda _f: span.__setitem__(1, time.time()))

    def train_done(self, step: int) -> None:
        start, end = self._train.pop(step, (None, None))
        if start is not None:
            self._rows.append({"kind": "train", "step": step, "start": start, "end": end or start})

    def published(self, step: int, start: float, end: float) -> None:
        self._rows.append({"kind": "publish", "step": step, "start": start, "end": end})

    def flush(self) -> None:
        """Append the rows collected so far (called once per step)."""
        rows, self._rows = self._rows, []
        if self.path is None or not rows:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
