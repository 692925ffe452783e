"""The loss mask in the methods: GRPO-VPS cuts segments per model turn and gives environment
segments no credit (their belief change stays out of the group's statistics), attention-credit
γ ranks model tokens only (no Δ across an environment turn), AsyPPO's σ quantiles are taken over
model tokens only."""

from __future__ import annotations

import pytest
import torch

from rlkit.methods.asyppo.advantage import asyppo_masks
from rlkit.methods.attention_credit import attention_gammas
from rlkit.methods.vps import grpo_vps_advantage, normalized_progress, vps_metrics
from rlkit.methods.vps.segments import model_segments, turn_segment_boundaries


def _decode(t: int) -> str:
    return "\n\n" if t == 0 else "x"


def test_segments_are_cut_per_model_turn_and_environment_turns_are_one_segment():
    # model turn "x x \n\n x x", environment turn of 3 tokens, model turn "x x"
    resp = [1, 1, 0, 1, 1, 7, 8, 9, 1, 1]
    mask = [1, 1, 1, 1, 1, 0, 0, 0, 1, 1]
    ends = turn_segment_boundaries(resp, mask, _decode, min_tokens=0)
    assert ends == [3, 5, 8, 10]
    assert model_segments(ends, mask) == [True, True, False, True]
    plain = turn_segment_boundaries(resp, None, _decode, min_tokens=0)
    assert plain == [3, 10] and model_segments(plain, None) == [True, True]
    # short-segment merging never crosses a turn: min_tokens merges inside each model turn only
    assert turn_segment_boundaries(resp, mask, _decode, min_tokens=32) == [5, 8, 10]


def test_environment_segments_get_no_credit_and_stay_out_of_the_statistics():
    """Row 0: segments model [0,2), env [2,4), model [4,6); the environment turn moves the
    belief by +0.6, which is no progress of the policy: Δ̂ and the advantages equal those of
    the same group without that Δ."""
    beliefs = [[0.1, 0.2, 0.8, 0.7], [0.1, 0.5, 0.4]]
    ends = [[2, 4, 6], [3, 6]]
    mask = torch.tensor([[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    keep = [[True, False, True], [True, True]]
    dhat = normalized_progress(beliefs, ends, [0, 0], keep=keep)
    deltas = torch.tensor([0.1, -0.1, 0.4, -0.1], dtype=torch.float64)  # the model's Δ only
    mu, sd = float(deltas.mean()), float(deltas.std())
    want = [[(0.1 - mu) / sd, 0.0, (-0.1 - mu) / sd], [(0.4 - mu) / sd, (-0.1 - mu) / sd]]
    for got, exp in zip(dhat, want):
        assert got == pytest.approx(exp, abs=1e-5)
    rewards = torch.tensor([1.0, 0.0])
    adv = grpo_vps_advantage(
        rewards=rewards, group_ids=[0, 0], mask=mask, beliefs=beliefs, segment_ends=ends, lam=0.5
    )
    assert adv[0, 2:4].tolist() == [0.0, 0.0]  # environment tokens: no advantage at all
    base = adv[0, 0] - 0.5 * min(max(want[0][0], -1.0), 1.0)
    want_4 = float(base) + 0.5 * max(min(want[0][2], 1.0), -1.0)
    assert float(adv[0, 4]) == pytest.approx(want_4, abs=1e-5)
    m = vps_metrics(beliefs, ends, [0, 0], keep=keep)
    assert m["vps/segments_per_response"] == 2.0  # model segments only
    assert m["vps/progress_mean"] == pytest.approx(mu)


def test_attention_gammas_rank_model_tokens_only_and_take_no_delta_across_an_environment_turn():
    # positions 0..3 model, 4..5 environment, 6..8 model; WAAD jumps only across the env turn
    waad = torch.tensor([[1.0, 1.1, 1.0, 1.1, 50.0, 60.0, 9.0, 9.1, 9.0]])
    fai = torch.tensor([[0.1, 0.2, 0.3, 0.4, 9.0, 9.0, 0.5, 0.6, 0.7]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 1, 1, 1]], dtype=torch.bool)
    pre = attention_gammas(waad, fai, mask, "preplan", top_frac=0.15)[0]
    assert pre[4:6].tolist() == [1.0, 1.0]  # environment tokens: neutral
    # n_top = 1 of 7 model tokens; without the gap rule token 3 (Δ = 7.9 to token 6) would win
    assert pre.tolist().index(1.5) != 3 and int((pre > 1).sum()) == 1
    anc = attention_gammas(waad, fai, mask, "anchor", top_frac=0.15)[0]
    assert anc.tolist() == [1.0] * 8 + [1.5]  # the highest FAI among model tokens, not env's


def test_asyppo_quantiles_are_over_model_tokens_only():
    torch.manual_seed(0)
    values = torch.randn(3, 2, 6)
    mask = torch.tensor([[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    sigma, adv_m, ent_m = asyppo_masks(values, mask)
    assert not adv_m[~mask].any() and not ent_m[~mask].any()
    s = values.std(0)[mask]
    assert torch.equal(adv_m[mask], s > torch.quantile(s, 0.2))
    assert torch.equal(ent_m[mask], s < torch.quantile(s, 0.8))


class _Tok:
    """What the vps_probes stage reads of a tokenizer: encoding and the EOS id."""

    eos_token_id = 99

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [5] * len(text)}


def test_vps_stage_plans_per_turn_segments_and_marks_environment_ones():
    from rlkit.config.loader import config_from_dict
    from rlkit.credit.pipeline import new_batch
    from rlkit.engines.rollout_protocol import Completion
    from rlkit.methods.vps.stage import VPSProbes
    from rlkit.runtime.controller.groups import Group, Prompt, Sample

    cfg = config_from_dict({"model": {"kind": "tiny"}, "algo": {"advantage": "grpo_vps"}})
    stage = VPSProbes(cfg, min_tokens=0, suffix="=")
    stage._tok, stage._decode, stage._suffix_ids = _Tok(), _decode, [5]
    resp, mask = [1, 0, 1, 7, 7, 1, 99], [1, 1, 1, 0, 0, 1, 1]
    g = Group(0, Prompt(0, "q", [3], {"answer": "4"}), 1, 0, 0)
    g.samples[0] = Sample(0, Completion(resp, [0.0] * 7, loss_mask=mask), 0, reward=1.0)
    (plan,) = stage.plan(new_batch([g]), None)
    assert plan["response"] == resp[:-1]  # the EOS is left out, and its mask entry with it
    assert plan["ends"] == [2, 3, 5, 6] and plan["model"] == [True, True, False, True]
