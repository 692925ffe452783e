"""The lean trainer's pieces: chunked log-probs/entropy equal the full log-softmax ones (value
and gradient), and token-budget micro-batch layouts respect the budget, cover every row once
and give every rank the same micro-batch count."""

from __future__ import annotations

import pytest
import torch

from rlkit.algos.entropy import entropy_from_logits
from rlkit.engines.logprobs import chunked_logprobs
from rlkit.engines.micro_batches import by_count, by_tokens, padded_tokens, step_layout
from rlkit.engines.train_batch import TrainSample


@pytest.mark.parametrize("entropy", ["none", "no_grad", "grad"])
@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_chunked_logprobs_equal_the_full_log_softmax(entropy, chunk):
    torch.manual_seed(0)
    logits = (torch.randn(3, 7, 11) * 4).requires_grad_()
    targets = torch.randint(0, 11, (3, 7))
    ref_lp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    ref_h = entropy_from_logits(logits)
    lp, h = chunked_logprobs(logits, targets, entropy=entropy, chunk=chunk)
    assert torch.allclose(lp, ref_lp, atol=1e-5)
    if entropy == "none":
        assert h is None
    else:
        assert torch.allclose(h, ref_h, atol=1e-5)
        assert h.requires_grad == (entropy == "grad")
    w = torch.randn(3, 7)
    with_h = entropy == "grad"
    g_ref = torch.autograd.grad((ref_lp * w).sum() + with_h * (ref_h * w).sum(), logits)[0]
    g = torch.autograd.grad((lp * w).sum() + (with_h and (h * w).sum()), logits)[0]
    assert torch.allclose(g, g_ref, atol=1e-5)


def test_chunked_logprobs_of_bf16_logits_are_float32():
    logits = torch.randn(2, 5, 9).to(torch.bfloat16)
    lp, _ = chunked_logprobs(logits, torch.zeros(2, 5, dtype=torch.long), chunk=2)
    assert lp.dtype == torch.float32


def test_token_budget_layout_respects_the_budget_and_covers_every_row():
    lens = [30, 5, 7, 28, 6, 12, 90, 8]
    layout = by_tokens(lens, budget=60)
    assert sorted(i for mb in layout for i in mb) == list(range(len(lens)))
    for mb in layout:
        assert len(mb) == 1 or padded_tokens(mb, lens) <= 60
    assert [6] in layout  # longer than the budget: alone
    assert len(layout) < len(lens)  # short rows share micro-batches
    assert by_count([3, 3, 3, 3, 3], 2) == [[0, 1], [2, 3], [4]]


def test_count_layout_groups_rows_of_similar_length():
    """GRPO groups mix short answers with truncated ones: sorted, the short rows share a
    micro-batch instead of each micro-batch padding to a truncated row."""
    lens = [64, 5, 64, 7, 6, 64, 8, 64]
    layout = by_count(lens, 4)
    assert layout == [[0, 2, 5, 7], [6, 3, 4, 1]]
    contiguous = [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sum(padded_tokens(mb, lens) for mb in layout) == 4 * 64 + 4 * 8
    assert sum(padded_tokens(mb, lens) for mb in contiguous) == 8 * 64


def test_ranks_are_dealt_rows_of_every_length():
    """Contiguous shares give one rank the long groups; dealt longest first, every rank's
    j-th micro-batch pads to about the same length, so ranks wait little at each reduce."""
    from rlkit.engines.train_batch import deal_by_length

    lens = [64, 64, 64, 64, 9, 5, 7, 6]  # group A truncated, group B short
    parts = deal_by_length(list(range(8)), 2, lens)
    assert parts == [[0, 2, 4, 7], [1, 3, 6, 5]]
    assert [lens[i] for i in parts[0]] == [64, 64, 9, 6]
    assert [lens[i] for i in parts[1]] == [64, 64, 7, 5]


def _s(n_prompt: int, n_resp: int) -> TrainSample:
    return TrainSample([1] * n_prompt, [2] * n_resp, [0.0] * n_resp)


def test_step_layout_gives_every_rank_the_same_count_per_mini_batch():
    # rank 0: long rows (many micro-batches); rank 1: short rows (few)
    rank0 = [[_s(3, 20), _s(3, 18), _s(3, 19), _s(3, 17)], [_s(3, 2)] * 4]
    rank1 = [[_s(3, 1)] * 4, [_s(3, 30), _s(3, 1), _s(3, 2), _s(3, 3)]]
    layout = step_layout([rank0, rank1], micro=16, budget=30)
    for k in range(2):
        assert len(layout[0][k]) == len(layout[1][k]) > 1
        for r in range(2):
            assert sorted(i for mb in layout[r][k] for i in mb) == [0, 1, 2, 3]
    assert step_layout([rank0, rank1], micro=3, budget=0)[1][0] == [[0, 1, 2], [3]]
    assert step_layout([rank0, rank1], micro=3, budget=0)[1][1] == [[0, 3, 2], [1]]


def test_one_rank_fp32_group_runs_zero_1_and_2_as_stage_0():
    """Nothing to partition with one rank: same update, none of the partition bookkeeping."""
    from rlkit.engines.deepspeed_engine import ds_config, effective_zero_stage

    assert ds_config(2, 4, 1, 1, 1.0, "float32")["zero_optimization"]["stage"] == 0
    assert ds_config(2, 4, 1, 2, 1.0, "float32")["zero_optimization"]["stage"] == 2
    assert effective_zero_stage(1, 1, "float32") == 0
    assert effective_zero_stage(3, 1, "float32") == 3  # changes how params are created
    assert effective_zero_stage(2, 1, "bfloat16") == 2  # keeps DeepSpeed's bf16 wrapper
