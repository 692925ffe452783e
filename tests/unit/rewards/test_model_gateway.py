"""Model rewards without a model: the gateway's batching, timeouts, fallbacks, parse failures,
restarts and cache, and the `ctx` keyword, with a pure-Python backend (the real actor and
engines are in tests/integration/test_reward_models.py)."""

from __future__ import annotations

import math
import re
import textwrap
import threading
import time

import pytest

from rlkit.rewards import RewardPool
from rlkit.rewards.invoke import Invoker
from rlkit.rewards.models import BackendDied, ModelGateway, RewardContext
from rlkit.rewards.models.verdict import as_item, parse_verdict, render, verdict_probability


class FakeBackend:
    """Scores len(response); optional delay, None for responses starting with '?', deaths."""

    def __init__(self, delay_s: float = 0.0, deaths: int = 0):
        self.delay_s, self.deaths, self.calls, self.restarts = delay_s, deaths, [], 0

    def call(self, items, timeout_s):
        if self.deaths:
            self.deaths -= 1
            raise BackendDied("killed")
        self.calls.append([it["response"] for it in items])
        if self.delay_s > timeout_s:
            time.sleep(timeout_s)
            raise TimeoutError("slow")
        time.sleep(self.delay_s)
        return [None if it["response"].startswith("?") else float(len(it["response"]))
                for it in items]  # fmt: skip

    def restart(self):
        self.restarts += 1

    def close(self):
        pass


def test_verdict_probability_is_normalised_softmax_of_two_tokens():
    for ly, ln in [(-0.1, -3.0), (-5.0, -0.2), (-700.0, -1.0), (-1.0, -1.0)]:
        want = math.exp(ly) / (math.exp(ly) + math.exp(ln)) if ly > -700 else 0.0
        assert verdict_probability(ly, ln) == pytest.approx(want, abs=1e-12)


def test_regex_verdict_and_render():
    pat = re.compile(r"(?i)verdict:\s*([0-9.]+|\w+)")
    assert parse_verdict("... Verdict: yes", pat, (" Yes", " No")) == 1.0
    assert parse_verdict("verdict: NO", pat, (" Yes", " No")) == 0.0
    assert parse_verdict("verdict: 0.25", pat, (" Yes", " No")) == 0.25
    assert parse_verdict("I cannot say", pat, (" Yes", " No")) is None
    assert parse_verdict("verdict: maybe", pat, (" Yes", " No")) is None
    item = {"prompt": "2+2=\\boxed{}?", "response": "4", "answer": "4"}
    assert render("Q {prompt} R {response} A {answer}", item) == "Q 2+2=\\boxed{}? R 4 A 4"
    assert as_item(("p", "r", "a")) == {"prompt": "p", "response": "r", "answer": "a"}
    with pytest.raises(ValueError, match="response"):
        as_item({"prompt": "p"})


def test_requests_of_two_reward_processes_land_in_one_batch(tmp_path):
    backend = FakeBackend()
    gw = ModelGateway("m", backend, batch_wait_s=1.0, max_batch=8)
    src = tmp_path / "judged.py"
    src.write_text(
        textwrap.dedent("""
        import os
        def judged(prompt, completion, ctx):
            [s] = ctx.models["m"].score([(prompt, completion)])
            return {"score": s, "pid": float(os.getpid())}
    """)
    )
    try:
        with RewardPool([f"{src}:judged"], num_workers=2, mode="process",
                        models=_Models(gw)) as pool:  # fmt: skip
            pool.wait_ready()
            res = pool.score_batch(["p", "p"], ["abc", "abcde"], [{}, {}])
            metrics = pool.metrics()
    finally:
        gw.close()
    assert [r.score for r in res] == [3.0, 5.0]
    assert len({r.components["judged/pid"] for r in res}) == 2  # two worker processes
    assert [sorted(c) for c in backend.calls] == [["abc", "abcde"]]  # one model call of two
    assert metrics["reward_model/m/batch_size"] == 2.0
    assert metrics["reward_model/m/requests"] == 2.0


def test_timeout_scores_fallback_and_is_counted():
    gw = ModelGateway("slow", FakeBackend(delay_s=5.0), timeout_s=0.2, fallback=-1.0,
                      batch_wait_s=0.0)  # fmt: skip
    try:
        ok, scores = gw.submit([{"response": "abc"}, {"response": "de"}])
        m = gw.metrics()
    finally:
        gw.close()
    assert ok and scores == [-1.0, -1.0]
    assert m["reward_model/slow/timeouts"] == 2.0 and m["reward_model/slow/fallbacks"] == 2.0


def test_parse_failures_cache_and_restart():
    backend = FakeBackend(deaths=1)
    gw = ModelGateway("j", backend, fallback=0.5, batch_wait_s=0.0, max_restarts=1,
                      log=lambda m: None)  # fmt: skip
    try:
        ok, scores = gw.submit([{"response": "?x"}, {"response": "abcd"}, {"response": "abcd"}])
        m = gw.metrics()
        ok2, again = gw.submit([{"response": "abcd"}])
        m2 = gw.metrics()
    finally:
        gw.close()
    assert ok and scores == [0.5, 4.0, 4.0]
    assert backend.restarts == 1 and m["reward_model/j/restarts"] == 1.0
    assert backend.calls == [["?x", "abcd"]]  # the duplicate is scored once, after the restart
    assert m["reward_model/j/parse_failures"] == 1.0 and m["reward_model/j/fallbacks"] == 1.0
    assert m["reward_model/j/cache_hits"] == 1.0
    assert ok2 and again == [4.0] and m2["reward_model/j/cache_hits"] == 1.0
    assert len(backend.calls) == 1  # served from the cache


def test_death_past_max_restarts_falls_back():
    gw = ModelGateway("d", FakeBackend(deaths=5), fallback=0.0, max_restarts=0,
                      batch_wait_s=0.0, log=lambda m: None)  # fmt: skip
    try:
        ok, scores = gw.submit([{"response": "a"}])
        m = gw.metrics()
    finally:
        gw.close()
    assert ok and scores == [0.0] and m["reward_model/d/errors"] == 1.0


def test_ctx_only_for_functions_that_name_it():
    ctx = RewardContext({})

    def named(prompt, completion, ctx):
        return float(isinstance(ctx, RewardContext))

    def loose(prompt, completion, **kw):
        return float("ctx" in kw)

    assert Invoker(named, False, ctx=ctx)(["p"], ["c"], [{}])[0]["score"] == 1.0
    assert Invoker(loose, False, ctx=ctx)(["p"], ["c"], [{}])[0]["score"] == 0.0


def test_handle_from_many_threads_batches():
    """16 clients connecting at once all get through (a listen backlog of 1 stalled some of
    them for tens of seconds) and share model calls."""
    backend = FakeBackend(delay_s=0.05)
    gw = ModelGateway("t", backend, batch_wait_s=0.3, max_batch=64)
    handle, out = gw.handle, {}
    threads = [threading.Thread(target=lambda i=i: out.update({i: handle.score("x" * i)}),
                                daemon=True) for i in range(1, 17)]  # fmt: skip
    t0 = time.perf_counter()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    finally:
        gw.close()
    assert out == {i: [float(i)] for i in range(1, 17)}
    assert time.perf_counter() - t0 < 10
    assert len(backend.calls) < 16  # requests of different threads shared model calls


class _Models:
    def __init__(self, gw):
        self.gw = gw

    @property
    def handles(self):
        return {self.gw.name: self.gw.handle}

    def metrics(self, reset=True):
        return self.gw.metrics(reset)


@pytest.mark.parametrize(
    "entry, key, needle",
    [
        ({"name": "j", "kind": "judge"}, "reward.models[0].path", "exactly one of path"),
        ({"name": "1j", "tiny": {}}, "reward.models[0].name", "identifier"),
        ({"name": "j", "tiny": {}, "verdict_tokens": ["Y"]}, "verdict_tokens", "two different"),
        ({"name": "j", "tiny": {}, "verdict": "regex", "regex": "("}, "regex", "does not compile"),
        ({"name": "j", "tiny": {}, "template": "{prompt}"}, "template", "{response}"),
        ({"name": "j", "tiny": {}, "max_batch": 0}, "max_batch", "expected > 0"),
        ({"name": "j", "tiny": {}, "kind": "critic"}, "reward.models[0].kind", "one of"),
    ],
)
def test_bad_reward_model_entries_fail_before_start(entry, key, needle):
    from rlkit.config import ConfigError
    from rlkit.config.loader import config_from_dict

    with pytest.raises(ConfigError, match=re.escape(needle)) as err:
        config_from_dict({"model": {"kind": "tiny"}, "reward": {"models": [entry]}})
    assert key in str(err.value)


def test_a_model_path_that_is_not_a_model_folder_is_named(tmp_path):
    from rlkit.config import ConfigError
    from rlkit.config.schema import RewardModelConfig
    from rlkit.runtime.reward_models import check_reward_models

    with pytest.raises(ConfigError, match=r"reward.models\[0\].path: model path not found"):
        check_reward_models([RewardModelConfig(name="j", path=str(tmp_path / "nope"))])


def test_the_gateway_listens_on_loopback_only():
    """Checked on the socket itself (psutil), as tests/integration/test_loopback.py does for
    the rest of a run."""
    import os

    import psutil

    gw = ModelGateway("m", FakeBackend(), batch_wait_s=0.01, max_batch=8)
    try:
        port = gw.handle.address[1]
        mine = [
            c for c in psutil.Process(os.getpid()).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]  # fmt: skip
        assert [c.laddr.ip for c in mine] == ["127.0.0.1"]
    finally:
        gw.close()
