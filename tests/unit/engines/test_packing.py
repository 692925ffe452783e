"""Padding-free packing (rlkit.engines.micro_batches `build`, rlkit.engines.logprobs): pack/unpack
round trips, the block mask, the
real-token budget layout, and a real transformers model giving the same per-sample logprobs,
entropy and gradient packed as padded (sdpa and eager; native position-id detection and the
explicit 4-D mask)."""

from __future__ import annotations

import pytest
import torch

from rlkit.engines.logprobs import forward_logprobs, micro_batch_forward
from rlkit.engines.micro_batches import (
    block_causal_mask,
    build,
    by_tokens,
    pack,
    pack_rows,
    packed_tokens,
    step_layout,
    unpack,
    unpack_index,
)
from rlkit.engines.train_batch import TrainSample, collate, response_values


def _sample(prompt: list[int], resp: list[int]) -> TrainSample:
    return TrainSample(prompt, resp, [-1.0] * len(resp), 0.5)


SAMPLES = [_sample([3, 4, 5], [6, 7]), _sample([8], [9, 10, 11, 12, 13]), _sample([14, 15], [16])]


def test_pack_concatenates_rows_and_restarts_positions():
    p = pack(SAMPLES)
    assert p.input_ids.tolist() == [[3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 0, 1, 2]]
    assert p.seq_lens == (5, 6, 3)
    with pytest.raises(ValueError):
        pack_rows([[1], []])


def test_unpack_maps_packed_targets_to_the_padded_layout():
    """Packed target p predicts token p+1; unpack puts row i's targets at [i, 0..n_i-2] and
    never reads the straddling positions (last token of a row -> first of the next)."""
    p = pack(SAMPLES)
    ids = p.input_ids
    targets = ids[:, 1:].float()  # [1, N-1]: each packed position's target token
    got = unpack(targets, p.seq_lens)
    padded = (
        collate(SAMPLES)["input_ids"][:, 1:].float() * collate(SAMPLES)["attention_mask"][:, 1:]
    )
    assert torch.equal(got, padded)  # same targets, zero padding
    index, valid = unpack_index(p.seq_lens)
    assert valid.sum().item() == sum(n - 1 for n in p.seq_lens)
    assert not set(index[valid].tolist()) & {4, 10}  # the straddling targets
    # response_values of the unpacked tensor are each sample's response targets
    assert response_values(got, SAMPLES) == [[6.0, 7.0], [9.0, 10.0, 11.0, 12.0, 13.0], [16.0]]


def test_unpack_is_differentiable_and_keeps_trailing_dims():
    p = pack(SAMPLES)
    v = torch.randn(1, 13, 4, requires_grad=True)
    out = unpack(v, p.seq_lens)
    assert out.shape == (3, 5, 4)
    out.sum().backward()
    index, valid = unpack_index(p.seq_lens)
    expected = torch.zeros(13)
    expected[index[valid]] = 1.0
    assert torch.equal(v.grad[0, :, 0], expected)
    assert unpack(torch.zeros(1, 0), (1, 1)).shape == (2, 0)


def test_block_causal_mask_is_causal_within_each_sequence_only():
    m = block_causal_mask((2, 3))[0, 0]
    allowed = (m == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 1],
    ]
    assert m.min().item() == torch.finfo(torch.float32).min


def test_packed_token_budget_counts_real_tokens():
    lens = [30, 5, 7, 28, 6, 12, 90, 8]
    layout = by_tokens(lens, budget=60, packed=True)
    assert sorted(i for mb in layout for i in mb) == list(range(len(lens)))
    for mb in layout:
        assert len(mb) == 1 or packed_tokens(mb, lens) <= 60
    # padded: [50], [20, 20, 5], [5, 5, 5] (rows x longest); packed: [50, 5, 5], [20, 20, 5, 5]
    lens = [50, 5, 5, 5, 5, 20, 20]
    assert by_tokens(lens, budget=60, packed=True) == [[0, 1, 2], [5, 6, 3, 4]]
    assert len(by_tokens(lens, budget=60)) == 3
    s = [TrainSample([1] * 3, [2] * n, [0.0] * n) for n in (20, 1, 1, 1)]
    lay = step_layout([[s], [s]], micro=4, budget=35, packed=True)
    assert lay[0] == lay[1] == [[[0, 1, 2, 3]]]  # 23 + 3 x 4 = 35 real tokens: one micro-batch
    assert len(step_layout([[s]], micro=4, budget=35)[0][0]) == 2  # padded: 4 x 23 > 35


def _tiny_llama(attn: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).float()


def _ragged_samples() -> list[TrainSample]:
    g = torch.Generator().manual_seed(1)
    out = []
    for n_p, n_r in [(3, 9), (5, 1), (2, 14), (4, 4)]:
        ids = torch.randint(3, 64, (n_p + n_r,), generator=g).tolist()
        out.append(_sample(ids[:n_p], ids[n_p:]))
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_forward_equals_padded_on_a_real_model(attn):
    """Same logp / entropy / gradient per response token, packed (native transformers
    detection from the position ids) as padded; the explicit 4-D mask agrees too."""
    model, samples = _tiny_llama(attn), _ragged_samples()
    out = {}
    for packing in (False, True):
        model.zero_grad()
        mb = build(samples, 0, packing)
        logp, _, ent = micro_batch_forward(model, mb, entropy="grad")
        mask = mb.batch["response_mask"]
        ((logp * mask).sum() + (ent * mask).sum()).backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        out[packing] = (logp * mask, ent * mask, grads)
    for a, b in zip(out[False], out[True]):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert out[True][2].abs().sum() > 0
    p = pack(samples)
    with torch.no_grad():
        explicit, _, _ = forward_logprobs(
            model, p.input_ids, block_causal_mask(p.seq_lens), position_ids=p.position_ids
        )
    mask = collate(samples)["response_mask"]
    assert torch.allclose(unpack(explicit, p.seq_lens) * mask, out[True][0], atol=1e-5)


@pytest.mark.parametrize("packing", [False, True])
def test_forward_computes_only_response_logits_and_matches_the_full_forward(packing):
    """The trainer's forward runs the LM head on response positions only (`keep`): the
    logits it returns are fewer than the targets, yet logp, entropy and the parameters'
    gradient equal a full-vocabulary forward over every position."""
    model, samples = _tiny_llama("sdpa"), _ragged_samples()
    model.zero_grad()
    mb = build(samples, 0, packing)
    batch = mb.batch
    logp, logits, ent = micro_batch_forward(model, mb, entropy="grad")
    mask = batch["response_mask"]
    ((logp * mask).sum() + (ent * mask).sum()).backward()
    kept = torch.cat([p.grad.flatten() for p in model.parameters()])
    if packing:
        assert logits.shape[1] == int(mask.sum())  # exactly the response targets
    else:
        assert logits.shape[1] < mask.shape[1]  # the shortest prompt's positions skipped
    model.zero_grad()
    full_lp, _, full_ent = forward_logprobs(
        model, batch["input_ids"], batch["attention_mask"], entropy="grad"
    )
    ((full_lp * mask).sum() + (full_ent * mask).sum()).backward()
    full = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(logp * mask, full_lp * mask, atol=1e-5)
    assert torch.allclose(ent * mask, full_ent * mask, atol=1e-5)
    assert torch.allclose(kept, full, atol=1e-5), (kept - full).abs().max()


def test_loss_context_refuses_entropy_from_logits_that_miss_positions():
    from rlkit.algos.loss_terms import LossContext

    mask = torch.ones(2, 5)
    ctx = LossContext(
        {"response_mask": mask}, torch.zeros(2, 5), torch.zeros(2, 3, 7), "token-mean", {}
    )
    with pytest.raises(ValueError, match="do not cover the response mask"):
        ctx.entropy(with_grad=False)


def test_packing_modules_import_no_deepspeed_ray_or_vllm():
    """benchmarks/packing.py runs on a machine with torch + transformers only."""
    import subprocess
    import sys

    code = (
        "import sys, rlkit.engines.micro_batches, rlkit.engines.logprobs\n"
        "heavy = [m for m in ('vllm', 'deepspeed', 'ray') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
