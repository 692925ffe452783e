"""The rollout worker's continuous engine loop on a real vLLM worker: the engine generates between
the controller's `run` calls, and aborts and weight loads mid-generation keep every request's
version stamp exact (requests added after a load carry the new version, earlier ones the old)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow


def _requests(tag: str, n: int, max_tokens: int, temperature: float = 1.0):
    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.runtime.actors.request_kinds import SampleRequest

    return [
        SampleRequest(
            f"{tag}:{i}",
            [40 + i, 41, 42, 43],
            SamplingConfig(
                max_tokens=max_tokens, temperature=temperature, seed=7 + i, ignore_eos=True
            ),
        )
        for i in range(n)
    ]


def _collect(worker, first: list, want: set[str], timeout_s: float = 180.0) -> list:
    """Run calls with nothing new until every id in `want` came back; outputs in arrival order."""
    import ray

    done = list(first)
    deadline = time.monotonic() + timeout_s
    while not want <= {f.request_id for f in done}:
        assert time.monotonic() < deadline, (
            f"still waiting for {want - {f.request_id for f in done}}"
        )
        done += ray.get(worker.run.remote([], [], 1.0))
    return done


def test_engine_generates_between_run_calls(vllm_worker, tiny_model):
    import ray

    from rlkit.runtime.placement.cluster import reset_workers

    reset_workers([vllm_worker], tiny_model)
    ray.get(vllm_worker.busy.remote())  # busy time counts from here
    assert ray.get(vllm_worker.run.remote(_requests("bg", 4, 64), [], 0.0)) == []
    # No run call from here on: `num_unfinished` only reads the engine, it never steps it.
    deadline = time.monotonic() + 120
    while ray.get(vllm_worker.num_unfinished.remote()):
        assert time.monotonic() < deadline, "the engine did not progress between run calls"
        time.sleep(0.1)
    t0 = time.perf_counter()
    done = ray.get(vllm_worker.run.remote([], [], 5.0))
    assert time.perf_counter() - t0 < 1.0  # handed over at once, nothing left to generate
    assert sorted(f.request_id for f in done) == [f"bg:{i}" for i in range(4)]
    assert all(len(f.completion.token_ids) == 64 for f in done)
    busy, wall = ray.get(vllm_worker.busy.remote())
    assert 0 < busy <= wall  # the worker's own stepping time since the previous reading


def test_abort_and_weight_load_mid_generation_keep_version_stamps(vllm_worker, tiny_model):
    import ray
    import torch

    from rlkit.engines.model_io import load_folder_state, state_dict_to_bytes
    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.runtime.placement.cluster import reset_workers

    reset_workers([vllm_worker], tiny_model)
    greedy = SamplingConfig(temperature=0.0, max_tokens=12, ignore_eos=True)
    prompt = [40, 41, 42, 43]
    v0_greedy = ray.get(vllm_worker.generate.remote([prompt], greedy))[0][0].token_ids
    gen = torch.Generator().manual_seed(0)
    state = load_folder_state(tiny_model)
    noisy = {
        k: v + 0.5 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
        for k, v in state.items()
    }
    blob = ray.put(state_dict_to_bytes(noisy))
    try:
        old = _requests("old", 4, 200)
        assert ray.get(vllm_worker.run.remote(old, [], 0.0)) == []
        # sent back to back: the load lands between engine steps, before the run's requests
        load = vllm_worker.load_weights.remote(blob, 1)
        new = [*_requests("new", 2, 12, temperature=0.0)]
        first = vllm_worker.run.remote(new, ["old:0", "old:1"], 0.0)
        assert ray.get(load) == 1
        done = _collect(vllm_worker, ray.get(first), {"old:2", "old:3", "new:0", "new:1"})
        done += ray.get(vllm_worker.run.remote([], [], 0.5))
        by_id = {f.request_id: f for f in done}
        order = [f.request_id for f in done]
        assert sorted(by_id) == ["new:0", "new:1", "old:2", "old:3"]  # aborted ones never return
        assert by_id["old:2"].start_version == by_id["old:3"].start_version == 0
        assert by_id["new:0"].start_version == by_id["new:1"].start_version == 1
        assert all(len(by_id[r].completion.token_ids) == 200 for r in ("old:2", "old:3"))
        # the old requests were still generating when the new ones (added after the load) ended
        assert max(order.index("new:0"), order.index("new:1")) < order.index("old:2")
        # the new request ran on the new weights: greedy equals a greedy call made afterwards
        v1_greedy = ray.get(vllm_worker.generate.remote([prompt], greedy))[0][0].token_ids
        assert by_id["new:0"].completion.token_ids == v1_greedy != v0_greedy
        assert ray.get(vllm_worker.num_unfinished.remote()) == 0
    finally:
        reset_workers([vllm_worker], tiny_model)
