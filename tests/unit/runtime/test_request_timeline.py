"""The request timeline (rlkit.runtime.controller.request_timeline): the rows it appends for
finished, aborted and non-rollout requests, train steps and publishes."""

from __future__ import annotations

import json
from concurrent.futures import Future

from rlkit.engines.rollout_protocol import Completion, FinishedRequest
from rlkit.runtime.actors.request_kinds import SampleRequest
from rlkit.runtime.controller.request_timeline import RequestTimeline


def rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_rows_for_requests_aborts_trains_and_publishes(tmp_path):
    tl = RequestTimeline(tmp_path)
    tl.sent([SampleRequest(r, [1], None) for r in ("3:0", "3:1", "4:0")], version=2)
    done = FinishedRequest("3:1", Completion([5, 6, 7], [-1.0] * 3), 2, 100.0, 101.5)
    job = FinishedRequest("job:1", Completion([], [-0.5]), 2, 100.0, 100.1)  # a probe: no row
    tl.finished(1, [done, job])
    tl.aborted(1, ["3:0"])
    future = Future()
    tl.train_started(7, future)
    assert not (tmp_path / "timeline.jsonl").exists()  # written per step only
    future.set_result({})
    tl.train_done(7)
    tl.published(7, 200.0, 200.25)
    tl.flush()
    request, aborted, train, publish = rows(tmp_path / "timeline.jsonl")
    assert request == {
        "kind": "request", "request": "3:1", "group": 3, "sample": 1, "worker": 1,
        "start": 100.0, "end": 101.5, "version": 2, "finish": "stop", "tokens": 3,
        "aborted": False,
    }  # fmt: skip
    assert aborted["aborted"] and aborted["request"] == "3:0" and aborted["version"] == 2
    assert aborted["start"] <= aborted["end"] and aborted["tokens"] == 0
    assert train["kind"] == "train" and train["step"] == 7 and train["end"] >= train["start"]
    assert publish == {"kind": "publish", "step": 7, "start": 200.0, "end": 200.25}
    tl.finished(0, [FinishedRequest("4:0", Completion([1], [0.0]), 2)])  # unstamped: sent time
    tl.flush()
    last = rows(tmp_path / "timeline.jsonl")[-1]
    assert last["request"] == "4:0" and last["start"] <= last["end"]
    assert len(rows(tmp_path / "timeline.jsonl")) == 5  # appended, not rewritten


def test_without_a_run_dir_nothing_is_written(tmp_path):
    tl = RequestTimeline(None)
    tl.published(1, 0.0, 1.0)
    tl.flush()
    assert tl.path is None and not list(tmp_path.iterdir())
