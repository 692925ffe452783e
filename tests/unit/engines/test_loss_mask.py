"""The loss mask on the trainer side: environment tokens of a multi-turn response (a
`TrainSample.loss_mask` 0) stay in the row as context but add nothing to the policy loss, the KL
term, the entropy term and metric, or the normalisers; packed and padded micro-batches agree."""

from __future__ import annotations

import pytest
import torch

from rlkit.algos.aggregation import AGG_MODES, global_normalizers
from rlkit.algos.loss_terms import LossContext, LossTerm, total_loss
from rlkit.engines.logprobs import micro_batch_forward
from rlkit.engines.micro_batches import build
from rlkit.engines.train_batch import TrainSample, chunks, collate

TERMS = [
    LossTerm("policy", 1.0, {"loss": "ppo"}),
    LossTerm("kl", 0.1, {"kind": "k3"}),
    LossTerm("entropy", 0.01),
]
PROMPT = [3, 4, 5]


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).float()


def _sample(resp: list[int], mask: list[int] | None, env_value: float = 0.0) -> TrainSample:
    """Model tokens get fixed streams; environment tokens (`mask` 0) get `env_value` in every
    stream, which must never matter."""
    on = [1] * len(resp) if mask is None else mask
    beh = [-1.0 - 0.1 * t if m else env_value for t, m in enumerate(on)]
    adv = [0.7 - 0.2 * t if m else env_value for t, m in enumerate(on)]
    ref = [-1.3 + 0.05 * t if m else env_value for t, m in enumerate(on)]
    return TrainSample(PROMPT, resp, beh, adv, streams={"ref_logprobs": ref}, loss_mask=mask)


def _step(model, samples, *, agg="token-mean", packing=False, micro=None):
    """The trainer rank's micro-step without DeepSpeed: (loss, grads, metrics of the last
    micro-batch), every micro-batch normalised by the whole batch (global_normalizers)."""
    norms = global_normalizers([s.num_trained for s in samples], max_len=16)
    model.zero_grad()
    total, metrics = 0.0, {}
    for part in chunks(samples, micro or len(samples)):
        mb = build(part, 0, packing)
        logp, logits, ent = micro_batch_forward(model, mb, entropy="grad")
        loss, metrics = total_loss(TERMS, LossContext(mb.batch, logp, logits, agg, norms, ent))
        loss.backward()
        total += float(loss.detach())
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return total, grads, metrics


def test_collate_marks_environment_tokens_out_of_the_response_mask():
    s = TrainSample([1, 2], [5, 6, 7, 8], [-1.0, 0.0, 0.0, -1.0], loss_mask=[1, 0, 0, 1])
    batch = collate([s, TrainSample([1], [5, 6], [-1.0, -1.0])])
    assert batch["response_mask"][0].tolist() == [0, 1, 0, 0, 1]  # target-aligned
    assert batch["response_mask"][1].tolist() == [1, 1, 0, 0, 0]
    assert (s.num_trained, s.trained_mask()) == (2, [1, 0, 0, 1])
    with pytest.raises(ValueError, match="loss_mask has 3 entries for 4"):
        TrainSample([1], [5, 6, 7, 8], [0.0] * 4, loss_mask=[1, 1, 0])


@pytest.mark.parametrize("agg", AGG_MODES)
def test_trailing_environment_tokens_change_nothing_the_model_trains_on(agg):
    """A response ending in environment tokens trains exactly like the same response without
    them, whatever those tokens and their streams are: equal loss, gradient, entropy and KL
    metrics, and the same normalisers."""
    model = _tiny_llama()
    model_part = [6, 7, 8, 9]
    plain = _sample(model_part, None)
    env_a = _sample([*model_part, 20, 21, 22], [1, 1, 1, 1, 0, 0, 0], env_value=5.0)
    env_b = _sample([*model_part, 40, 41, 42], [1, 1, 1, 1, 0, 0, 0], env_value=-9.0)
    assert plain.num_trained == env_a.num_trained == env_b.num_trained == 4
    out = [_step(model, [s], agg=agg) for s in (plain, env_a, env_b)]
    for loss, grads, metrics in out[1:]:
        assert loss == pytest.approx(out[0][0], abs=1e-6)
        assert torch.allclose(grads, out[0][1], atol=1e-6)
        for key in ("entropy/mean", "kl/mean/share", "pg/loss", "pg/ratio_mean"):
            assert metrics[key] == pytest.approx(out[0][2][key], abs=1e-6), key
    assert out[0][1].abs().sum() > 0


@pytest.mark.parametrize("agg", AGG_MODES)
def test_masked_positions_contribute_exactly_zero(agg):
    """Environment tokens in the middle: the loss equals the loss of the same per-token values
    with the environment columns removed, and its gradient at those positions is exactly 0
    (the only way they reach the model tokens' loss is as context of the forward)."""
    torch.manual_seed(1)
    mask = torch.tensor([[1, 1, 0, 0, 1, 1, 0], [1, 0, 1, 1, 1, 1, 1]], dtype=torch.float32)
    keep = mask.bool()
    vals = {k: torch.randn(2, 7) for k in ("advantages", "behavior_logprobs", "ref_logprobs")}
    logp = (torch.randn(2, 7) - 2).requires_grad_()
    ent = torch.rand(2, 7).requires_grad_()
    norms = {"num_tokens": float(mask.sum()), "num_seqs": 2.0, "max_len": 7.0}
    batch = {"response_mask": mask, **vals}
    loss, metrics = total_loss(TERMS, LossContext(batch, logp, logp, agg, norms, ent))
    loss.backward()
    assert torch.all(logp.grad[~keep] == 0) and torch.all(ent.grad[~keep] == 0)
    assert logp.grad[keep].abs().sum() > 0

    def compact(x: torch.Tensor) -> torch.Tensor:  # each row's trained columns, left-aligned
        out = torch.zeros_like(x)
        for i in range(x.shape[0]):
            row = x[i][keep[i]]
            out[i, : row.numel()] = row
        return out

    cmask = compact(mask)
    small = {"response_mask": cmask, **{k: compact(v) for k, v in vals.items()}}
    lp2, ent2 = compact(logp.detach()), compact(ent.detach())
    with torch.no_grad():  # the entropy passed in is used as is
        want, want_m = total_loss(TERMS, LossContext(small, lp2, lp2, agg, norms, ent2))
    assert float(loss.detach()) == pytest.approx(float(want), abs=1e-6)
    assert metrics["entropy/mean"] == pytest.approx(want_m["entropy/mean"], abs=1e-6)
    # and whatever the streams hold at environment positions, nothing changes
    noisy = {k: torch.where(keep, v, torch.full_like(v, 1e3)) for k, v in vals.items()}
    batch3 = {"response_mask": mask, **noisy}
    lp3 = torch.where(keep, logp.detach(), torch.full_like(logp, -50.0))
    with torch.no_grad():
        again, _ = total_loss(TERMS, LossContext(batch3, lp3, lp3, agg, norms, ent.detach()))
    assert float(again) == pytest.approx(float(loss.detach()), abs=1e-6)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_packed_and_padded_micro_batches_give_the_same_loss_with_masks(agg):
    """Multi-turn samples (environment turns in the middle and at the end), one padded batch,
    two padded micro-batches and two packed ones: the same loss and gradient."""
    model = _tiny_llama()
    samples = [
        _sample([6, 7, 20, 21, 8, 9], [1, 1, 0, 0, 1, 1], env_value=3.0),
        _sample([10, 11, 12], None),
        _sample([13, 30, 31, 32, 14, 15, 33], [1, 0, 0, 0, 1, 1, 0], env_value=-4.0),
        _sample([16, 17], [1, 1]),
    ]
    whole = _step(model, samples, agg=agg)
    for packing in (False, True):
        loss, grads, _ = _step(model, samples, agg=agg, packing=packing, micro=2)
        assert loss == pytest.approx(whole[0], abs=1e-5)
        assert torch.allclose(grads, whole[1], atol=1e-5), (grads - whole[1]).abs().max()


@pytest.mark.parametrize("packing", [False, True])
def test_the_forward_computes_no_logits_for_environment_tokens(packing):
    """The LM head runs on trained positions only (a long tool output costs no [V]-wide work),
    and the trained tokens' log-probs and gradient equal a full forward's."""
    from rlkit.engines.logprobs import forward_logprobs

    model = _tiny_llama()
    samples = [
        _sample([6, 7, 20, 21, 22, 23, 8], [1, 1, 0, 0, 0, 0, 1]),
        _sample([10, 30, 31, 32, 33, 11], [1, 0, 0, 0, 0, 1]),
    ]
    mb = build(samples, 0, packing)
    mask = mb.batch["response_mask"]
    logp, logits, _ = micro_batch_forward(model, mb)
    if packing:
        assert logits.shape[1] == int(mask.sum()) == 5
    else:  # the positions where some row has a trained token: 4 of the 7 response targets
        assert logits.shape[1] == int(mask.any(0).sum()) == 4
    (logp * mask).sum().backward()
    kept = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()
    full, _, _ = forward_logprobs(model, mb.batch["input_ids"], mb.batch["attention_mask"])
    (full * mask).sum().backward()
    whole = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(logp * mask, full * mask, atol=1e-5)
    assert torch.allclose(kept, whole, atol=1e-5)


class _Rank:
    """A rank actor's `train_step.remote`, recording the normalisers it is given."""

    def __init__(self):
        self.train_step, self.got = self, None

    def remote(self, *args):
        self.got = args
        return "ref"


def test_trainer_and_critic_groups_normalise_by_trained_tokens():
    from rlkit.algos.critic import disjoint_shares
    from rlkit.runtime.actors.critic_group import CriticGroup
    from rlkit.runtime.actors.trainer_group import TrainerGroup

    samples = [
        _sample([6, 7, 20, 21, 8], [1, 1, 0, 0, 1]),
        _sample([9, 10], None),
        _sample([11, 30, 31], [1, 0, 0]),
        _sample([12], None),
    ]
    tg = TrainerGroup.__new__(TrainerGroup)
    tg.world, tg.mini_batches, tg.max_len = 2, 1, 16
    tg.micro, tg.micro_tokens, tg.packing = 2, 0, False
    tg.ranks = [_Rank(), _Rank()]
    tg.train_step_async(samples)
    (norms,) = tg.ranks[0].got[1]
    assert norms == {"num_tokens": 3 + 2 + 1 + 1, "num_seqs": 4.0, "max_len": 16.0}
    cg = CriticGroup.__new__(CriticGroup)
    cg.world, cg.num_critics, cg.split = 1, 2, disjoint_shares
    cg.ranks = [_Rank()]
    cg.train_async(samples, [], [], [4])
    assert [n["num_tokens"] for n in cg.ranks[0].got[4]] == [3 + 1, 2 + 1]
