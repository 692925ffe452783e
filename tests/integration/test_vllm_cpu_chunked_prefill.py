"""Seeded samples whose prompts overflow one engine step's token budget (vLLM CPU).

The async loop adds seeded requests while others decode, so vLLM's token budget used to split a
prefill over two steps; vLLM then rewinds the request's generator with `set_offset`, which a CPU
generator lacks (`RuntimeError: CPU Generator does not use offset`, the engine dies).  The
engine turns chunked prefill off on CPU (vllm_engine._cpu_scheduler_kwargs); this test overflows
the budget with distinct seeded prompts and checks that sampling stays per-request seeded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROMPT_LEN = 200  # below the fixture's max_model_len (256), minus the sampled tokens


def _budget(worker) -> int:
    import ray

    def read(self) -> int:
        return self.engine._engine.vllm_config.scheduler_config.max_num_batched_tokens

    return int(ray.get(worker.__ray_call__.remote(read)))


def _prompts(tiny_model: str, count: int) -> list[list[int]]:
    """`count` distinct prompts (different lengths: no shared prefix to cache)."""
    vocab = json.loads((Path(tiny_model) / "config.json").read_text())["vocab_size"]
    return [
        [10 + (k * 31 + i * 17 + k * i) % (vocab - 10) for k in range(PROMPT_LEN - i % 5)]
        for i in range(count)
    ]


def test_seeded_prompts_overflowing_the_token_budget(tiny_model, vllm_worker):
    import ray

    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.runtime.placement.cluster import reset_workers

    reset_workers([vllm_worker], tiny_model)
    prompts = _prompts(tiny_model, _budget(vllm_worker) // PROMPT_LEN + 3)
    cfg = SamplingConfig(n=2, temperature=1.0, max_tokens=4, seed=7)
    together = ray.get(vllm_worker.generate.remote(prompts, cfg))  # crashed before the fix
    assert len(together) == len(prompts)
    assert all(len(c.token_ids) == 4 for group in together for c in group)
    # per-request seeds: the prompt that did not fit in the first step samples exactly what it
    # samples alone (the generator is drawn only for kept tokens)
    (alone,) = ray.get(vllm_worker.generate.remote([prompts[-1]], cfg))
    assert [c.token_ids for c in alone] == [c.token_ids for c in together[-1]]
    assert [c.token_ids for c in together[-1]][0] != [c.token_ids for c in together[-1]][1]
