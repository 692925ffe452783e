"""The worker runs request kinds from a registry: streaming kinds start engine requests at once,
an exclusive kind is served once nothing is in flight (other outputs kept), an unknown kind is
one clear error, and a refused request comes back finished with the reason."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rlkit.algos.registry import UnknownNameError
from rlkit.engines.rollout_protocol import Completion, FinishedRequest, SamplingConfig
from rlkit.runtime.actors.request_kinds import REQUEST_KINDS, register_request_kind
from rlkit.runtime.actors.rollout_worker import RolloutWorker
from tests.unit.runtime.test_engine_loop import StepEngine, req

SEEN: list[tuple[int, list[str]]] = []  # (requests in flight when served, ids served)


@dataclass
class WholeEngineRequest:
    request_id: str
    kind: str = "test_whole_engine"


@register_request_kind("test_whole_engine", exclusive=True)
def serve_whole_engine(engine, requests):
    SEEN.append((engine.num_unfinished(), [r.request_id for r in requests]))
    return [
        FinishedRequest(r.request_id, Completion([7], [-1.0]), engine.version) for r in requests
    ]


def test_exclusive_kind_waits_for_the_stream_and_keeps_its_outputs():
    SEEN.clear()
    worker = RolloutWorker.around(StepEngine())
    mixed = [WholeEngineRequest("w:0"), req("s:0", 3), WholeEngineRequest("w:1"), req("s:1", 2)]
    done = worker.run(mixed, [], 5.0)
    assert SEEN == [(0, ["w:0", "w:1"])]  # one call for the kind, with nothing in flight
    assert sorted(f.request_id for f in done) == ["s:0", "s:1", "w:0", "w:1"]  # none lost
    assert [f.completion.token_ids for f in done if f.request_id.startswith("w")] == [[7], [7]]


def test_unknown_kind_is_one_clear_error():
    worker = RolloutWorker.around(StepEngine())
    with pytest.raises(UnknownNameError, match="request kind 'no_such_kind'.*known: .*sample"):
        worker.run([WholeEngineRequest("x", kind="no_such_kind")], [], 0.0)


def test_built_in_kinds_and_a_refused_request():
    assert {"sample", "score"} <= set(REQUEST_KINDS.names())
    assert not REQUEST_KINDS["sample"].exclusive and not REQUEST_KINDS["score"].exclusive

    class Refusing(StepEngine):
        def add(self, rid, prompt, sampling):
            raise ValueError("prompt longer than max_model_len")

    worker = RolloutWorker.around(Refusing())
    (fin,) = worker.run([req("r:0", 2)], [], 1.0)
    assert fin.completion.finish_reason == "error" and "max_model_len" in fin.completion.text


def test_score_requests_run_as_their_own_kind():
    worker = RolloutWorker.around(StepEngine())
    out = worker.score([[1, 2, 3, 4]], [2])  # StepEngine: a scoring job takes `from` steps
    assert out == [[-0.1]]
    assert worker.generate([[1, 2]], SamplingConfig(n=2, max_tokens=1)) == [
        [Completion([1], [-0.1]), Completion([1], [-0.1])]
    ]
