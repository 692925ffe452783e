"""The reference model scores in micro-batches (rlkit.engines.reference): the log-probs equal
one whole-batch forward, padded or packed."""

from __future__ import annotations

import pytest
import torch

from rlkit.engines.logprobs import micro_batch_forward
from rlkit.engines.micro_batches import build
from rlkit.engines.reference import ReferencePolicy
from rlkit.engines.train_batch import TrainSample, response_values


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from rlkit.data.tiny_model import build_tiny_model

    return str(
        build_tiny_model(
            tmp_path_factory.mktemp("ref") / "m", hidden_size=64, num_heads=1, intermediate_size=64
        )
    )


def _samples() -> list[TrainSample]:
    g = torch.Generator().manual_seed(3)
    out = []
    for n_p, n_r in [(3, 9), (5, 1), (2, 14), (4, 4), (6, 2)]:
        ids = torch.randint(3, 60, (n_p + n_r,), generator=g).tolist()
        out.append(TrainSample(ids[:n_p], ids[n_p:], [-1.0] * n_r, 0.0))
    return out


@pytest.mark.parametrize("micro,packing", [(1, False), (2, False), (3, True), (5, False)])
def test_micro_batched_reference_logprobs_equal_the_whole_batch(model_dir, micro, packing):
    ref = ReferencePolicy(model_dir, device="cpu", dtype="float32", micro_batch=micro,
                          packing=packing)  # fmt: skip
    samples = _samples()
    with torch.no_grad():
        logp, _, _ = micro_batch_forward(ref.model, build(samples, ref.pad_id, False))
    whole = response_values(logp, samples)
    rows = []  # rows of every forward the reference runs
    ref.model.register_forward_hook(lambda m, args, kw, out: rows.append(kw["input_ids"].shape[0]),
                                    with_kwargs=True)  # fmt: skip
    got = ref.logprobs(samples)
    n = len(samples)
    assert len(rows) == -(-n // micro)  # one forward per micro-batch, never the whole batch
    if not packing:
        assert rows == [min(micro, n - i) for i in range(0, n, micro)]
    assert [len(r) for r in got] == [len(s.response_ids) for s in samples]
    for a, b in zip(got, whole):
        assert a == pytest.approx(b, abs=1e-5)
    assert any(v < -0.1 for row in got for v in row)  # real log-probs, not zeros


def test_the_reference_is_frozen_in_the_recipes_dtype_on_the_ranks_threads(model_dir):
    ref = ReferencePolicy(model_dir, device="cpu", dtype="bfloat16", micro_batch=2,
                          packing=False, threads=1)  # fmt: skip
    params = list(ref.model.parameters())
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in params)
    assert not ref.model.training
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = ref.logprobs(_samples()[:2])
        assert torch.get_num_threads() == 1  # the trainer rank's thread count
    finally:
        torch.set_num_threads(before)
    assert all(isinstance(v, float) for row in out for v in row)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_reference_runs_there_in_bfloat16(model_dir):
    ref = ReferencePolicy(model_dir, device="cuda", dtype="bfloat16", micro_batch=2, packing=True)
    assert next(ref.model.parameters()).device.type == "cuda"
    cpu = ReferencePolicy(model_dir, device="cpu", dtype="float32", micro_batch=5, packing=False)
    samples = _samples()
    for a, b in zip(ref.logprobs(samples), cpu.logprobs(samples)):
        assert a == pytest.approx(b, abs=0.05)  # bf16 weights: close, not equal
