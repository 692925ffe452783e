"""GRPO-VPS: segmentation rules, answer beliefs (packed == naive == direct), credit formula."""

import math
import statistics

import pytest
import torch

from rlkit.algos import compute_advantages
from rlkit.methods.vps import (
    answer_beliefs,
    boundaries_from_pieces,
    build_probes,
    normalized_progress,
    segment_boundaries,
    vps_metrics,
)
from rlkit.methods.vps.beliefs import packed_layout

# ---------------------------------------------------------------- segmentation


def _chars(text: str) -> list[str]:
    return list(text)


def test_blank_lines_split_and_separator_stays_with_previous_segment():
    text = "aaaa\n\nbbb\n\n\ncc"
    ends = boundaries_from_pieces(_chars(text), min_tokens=0)
    assert ends == [6, 12, 14]  # "aaaa\n\n" | "bbb\n\n\n" | "cc"


def test_single_newlines_ignored_when_blank_lines_give_two_segments():
    text = "a\nb\n\nc\nd"
    assert boundaries_from_pieces(_chars(text), min_tokens=0) == [5, 8]


def test_single_newline_fallback():
    text = "ab\ncd\nef"
    assert boundaries_from_pieces(_chars(text), min_tokens=0) == [3, 6, 8]
    assert boundaries_from_pieces(_chars("no newline at all"), min_tokens=0) == [17]
    assert boundaries_from_pieces(_chars("trailing\n\n"), min_tokens=0) == [10]


def test_separator_inside_a_token_puts_the_token_before_the_cut():
    pieces = ["Step", " one", ".\n\nNext", " step", "\n\n", "end"]
    assert boundaries_from_pieces(pieces, min_tokens=0) == [3, 5, 6]


def test_short_segments_merge_into_shorter_neighbour():
    # segment lengths 10, 2, 5, 20 -> the 2 merges with the 5 (shorter neighbour) -> 10, 7, 20
    # -> the 7 merges with the 10 -> 17, 20
    pieces = ["x"] * 9 + ["\n"] + ["y", "\n"] + ["z"] * 4 + ["\n"] + ["w"] * 20
    assert boundaries_from_pieces(pieces, min_tokens=8) == [17, 37]
    assert boundaries_from_pieces(pieces, min_tokens=3) == [10, 17, 37]
    # a short first segment can only merge forward, a short last one only backward
    assert boundaries_from_pieces(["a", "\n"] + ["b"] * 9 + ["\n", "c"], min_tokens=3) == [13]
    assert boundaries_from_pieces(["a"] * 5, min_tokens=32) == [5]  # one segment stays


def test_cap_merges_smallest_adjacent_pair():
    pieces = []
    for n in (5, 1, 1, 5, 3, 3):  # segment lengths in tokens
        pieces += ["t"] * (n - 1) + ["t\n"]  # never two newlines in a row
    assert boundaries_from_pieces(pieces, min_tokens=0, max_segments=6) == [5, 6, 7, 12, 15, 18]
    # 6 -> 5: merge (1,1) -> 5,2,5,3,3 ; -> 4: merge (3,3) -> 5,2,5,6 ; -> 3: merge (5,2)
    assert boundaries_from_pieces(pieces, min_tokens=0, max_segments=4) == [5, 7, 12, 18]
    assert boundaries_from_pieces(pieces, min_tokens=0, max_segments=3) == [7, 12, 18]
    assert boundaries_from_pieces(pieces, min_tokens=0, max_segments=1) == [18]


def test_segment_boundaries_from_token_ids_and_tokenizer():
    from rlkit.data.tiny_model import build_char_tokenizer

    tok = build_char_tokenizer()
    text = "First step.\n\nSecond step here.\n\nDone."
    ids = tok.encode(text)
    ends = segment_boundaries(ids, tok, min_tokens=0)
    assert ends[-1] == len(ids)
    assert [tok.decode(ids[a:b]) for a, b in zip([0, *ends], ends)] == [
        "First step.\n\n",
        "Second step here.\n\n",
        "Done.",
    ]
    assert segment_boundaries(ids, lambda i: tok.decode([i]), min_tokens=0) == ends
    assert segment_boundaries([], tok) == []


# ---------------------------------------------------------------- beliefs


def _tiny(kind: str, impl: str):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[kind]
    cfg = cls(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # GQA
        max_position_embeddings=512,
        initializer_range=0.2,  # peaky enough that beliefs differ between probes
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=impl).float()


def _ids(n: int, seed: int) -> list[int]:
    return torch.randint(0, 64, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


PROMPT, RESPONSE, SUFFIX, ANSWER = _ids(7, 1), _ids(40, 2), _ids(5, 3), _ids(3, 4)
BOUNDS = [0, 5, 17, 17, 33, 40]


def _direct_belief(model, probe: list[int], n_answer: int) -> float:
    """Independent reference: full logits of one probe, softmax, mean log p of the answer."""
    with torch.no_grad():
        logits = model(torch.tensor([probe])).logits[0].double()
    logp = logits.log_softmax(-1)
    n = len(probe)
    vals = [logp[n - n_answer - 1 + j, probe[n - n_answer + j]] for j in range(n_answer)]
    return math.exp(float(sum(vals)) / n_answer)


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("suffix", [SUFFIX, []], ids=["suffix", "no_suffix"])
def test_packed_equals_naive_equals_direct(kind, impl, suffix):
    model = _tiny(kind, impl)
    naive = answer_beliefs(model, PROMPT, RESPONSE, BOUNDS, suffix, ANSWER, method="naive")
    packed = answer_beliefs(model, PROMPT, RESPONSE, BOUNDS, suffix, ANSWER, method="packed")
    assert len(naive) == len(packed) == len(BOUNDS)
    for a, b in zip(naive, packed):
        assert abs(a - b) < 1e-4 and abs(math.log(a) - math.log(b)) < 1e-4
    assert naive[2] == pytest.approx(naive[3], rel=1e-5)  # equal boundaries, equal probes
    assert max(naive) - min(naive) > 1e-3  # beliefs do depend on the prefix
    probes = build_probes(PROMPT, RESPONSE, BOUNDS, suffix, ANSWER)
    for p, probe in zip(packed, probes):
        assert p == pytest.approx(_direct_belief(model, probe, len(ANSWER)), rel=1e-4)


def test_packed_probe_never_sees_the_response_after_its_boundary():
    model = _tiny("qwen2", "sdpa")
    base = answer_beliefs(model, PROMPT, RESPONSE, [0, 10, 40], SUFFIX, ANSWER)
    changed = RESPONSE[:10] + [(t + 1) % 64 for t in RESPONSE[10:]]
    other = answer_beliefs(model, PROMPT, changed, [0, 10, 40], SUFFIX, ANSWER)
    assert other[:2] == pytest.approx(base[:2], abs=1e-6)
    assert abs(other[2] - base[2]) > 1e-6  # the full-response probe does see the change


def test_packed_layout_mask_and_positions():
    allowed, pos, rows = packed_layout(2, 3, [0, 2], 3, 2)  # probes: 1 suffix + 2 answer tokens
    assert allowed.shape == (11, 11)
    assert pos.tolist() == [0, 1, 2, 3, 4, 2, 3, 4, 4, 5, 6]
    assert allowed[5].tolist() == [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert allowed[10].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1]
    assert rows.tolist() == [[5, 6], [8, 9]]
    _, _, rows0 = packed_layout(2, 3, [0, 2], 2, 2)  # no suffix: first answer token from context
    assert rows0.tolist() == [[1, 5], [3, 7]]


def test_belief_arguments_are_checked():
    model = _tiny("llama", "eager")
    with pytest.raises(ValueError, match="answer_ids"):
        answer_beliefs(model, PROMPT, RESPONSE, [0], SUFFIX, [])
    with pytest.raises(ValueError, match="outside"):
        answer_beliefs(model, PROMPT, RESPONSE, [0, 41], SUFFIX, ANSWER)
    with pytest.raises(ValueError, match="belief method"):
        answer_beliefs(model, PROMPT, RESPONSE, [0], SUFFIX, ANSWER, method="engine")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="packed"):
        answer_beliefs(model, PROMPT, RESPONSE, [0], SUFFIX, ANSWER)


# ---------------------------------------------------------------- credit


def _grpo(rewards, gids, **kw):
    return compute_advantages("grpo", rewards=torch.tensor(rewards), group_ids=gids, **kw)


def _vps(rewards, gids, mask, beliefs, ends, **kw):
    return compute_advantages(
        "grpo_vps",
        rewards=torch.tensor(rewards),
        group_ids=gids,
        mask=mask,
        beliefs=beliefs,
        segment_ends=ends,
        **kw,
    )


def test_segment_mode_hand_computed():
    # group of 4: Δ = [0.4, 0.1], [0.1]; mean 0.2, Bessel std sqrt(0.03)
    beliefs = [[0.1, 0.5, 0.6], [0.1, 0.2], None, []]
    ends = [[2, 6], [6], [], []]
    adv = _vps([1.0, 0.0, 1.0, 0.0], [0, 0, 0, 0], torch.ones(4, 6), beliefs, ends)
    g = 0.5 / (math.sqrt(1 / 3) + 1e-6)  # GRPO: ±0.866
    s = math.sqrt(0.03) + 1e-6
    dh = [0.2 / s, -0.1 / s, -0.1 / s]  # 1.155 (clipped to 1), -0.577, -0.577
    expected = torch.tensor(
        [
            [g + 0.5 * 1.0] * 2 + [g + 0.5 * dh[1]] * 4,
            [-g + 0.5 * dh[2]] * 6,
            [g] * 6,  # no beliefs: plain GRPO
            [-g] * 6,
        ]
    )
    torch.testing.assert_close(adv, expected, rtol=1e-5, atol=1e-6)
    assert adv[0, 0].item() == pytest.approx(1.3660, abs=1e-4)


def test_future_mode_hand_computed_with_clip():
    beliefs = [[0.0, 0.3, 0.1, 0.5], [0.2, 0.2]]
    ends = [[1, 3, 4], [4]]
    deltas = [0.3, -0.2, 0.4, 0.0]
    mu, sd = statistics.mean(deltas), statistics.stdev(deltas)
    dh = [(d - mu) / (sd + 1e-6) for d in deltas]  # [0.636, -1.180, 0.999, -0.454]
    fut = [dh[0] + dh[1] + dh[2], dh[1] + dh[2], dh[2]]  # [0.454, -0.182, 0.999]
    kw = {"lam": 2.0, "clip": 0.8, "mode": "future"}
    adv = _vps([1.0, 0.0], ["q", "q"], torch.ones(2, 4), beliefs, ends, **kw)
    g = 0.5 / (math.sqrt(0.5) + 1e-6)
    clipped = [max(min(f, 0.8), -0.8) for f in fut]
    expected = torch.tensor([[g + 2 * clipped[0], g + 2 * clipped[1], g + 2 * clipped[1], g + 1.6],
                             [-g + 2 * max(dh[3], -0.8)] * 4])  # fmt: skip
    torch.testing.assert_close(adv, expected, rtol=1e-5, atol=1e-6)
    assert fut[0] == pytest.approx(0.4539, abs=1e-3)
    seg = _vps([1.0, 0.0], ["q", "q"], torch.ones(2, 4), beliefs, ends, lam=2.0, clip=0.8)
    assert seg[0, 0].item() == pytest.approx(g + 2 * dh[0], rel=1e-5)  # segment mode differs


def test_single_segment_group_and_equal_progress_give_plain_grpo():
    mask = torch.ones(3, 5)
    one_seg = [[0.2, 0.9], None, []]
    adv = _vps([1.0, 0.0, 0.0], [7, 7, 7], mask, one_seg, [[5], [], []])
    grpo = _grpo([1.0, 0.0, 0.0], [7, 7, 7])
    torch.testing.assert_close(adv, grpo[:, None].expand(3, 5))
    same = [[0.1, 0.3], [0.5, 0.7], [0.0, 0.2]]  # every Δ = 0.2: std 0 -> Δ̂ = 0
    adv = _vps([1.0, 0.0, 0.0], [7, 7, 7], mask, same, [[5], [5], [5]])
    torch.testing.assert_close(adv, grpo[:, None].expand(3, 5), atol=1e-6, rtol=0)


def test_rows_without_gold_do_not_enter_group_statistics():
    beliefs, ends = [[0.1, 0.5, 0.6], [0.1, 0.2]], [[2, 6], [6]]
    with_none = normalized_progress([*beliefs, None], [*ends, []], [0, 0, 0])
    alone = normalized_progress(beliefs, ends, [0, 0])
    assert with_none[:2] == alone and with_none[2] == []
    other_group = normalized_progress([*beliefs, [0.9, 0.0]], [*ends, [3]], [0, 0, 1])
    assert other_group[:2] == alone and other_group[2] == [0.0]  # alone in its group


def test_mask_zeros_and_tokens_past_last_segment():
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    beliefs, ends = [[0.0, 0.5, 0.6], [0.0, 0.1, 0.5]], [[2, 4], [1, 3]]
    adv = _vps([1.0, 0.0], [0, 0], mask, beliefs, ends)
    assert (adv[~mask] == 0).all() and (adv[mask] != 0).all()
    adv2 = _vps([1.0, 0.0], [0, 0], torch.ones(2, 6), beliefs, ends)
    g = _grpo([1.0, 0.0], [0, 0])
    torch.testing.assert_close(adv2[:, 4:], g[:, None].expand(2, 2))  # past b_K: plain GRPO
    torch.testing.assert_close(adv2[mask], adv[mask])


def test_grpo_knobs_are_forwarded_and_inputs_checked():
    beliefs, ends = [[0.0, 0.4], [0.0, 0.1]], [[2], [2]]
    adv = _vps([1.0, 0.0], [0, 0], torch.ones(2, 2), beliefs, ends, epsilon=0.5, lam=0.0)
    torch.testing.assert_close(adv[:, 0], _grpo([1.0, 0.0], [0, 0], epsilon=0.5))
    with pytest.raises(ValueError, match="K\\+1"):
        _vps([1.0, 0.0], [0, 0], torch.ones(2, 2), [[0.0], [0.0, 0.1]], ends)
    with pytest.raises(ValueError, match="mode"):
        _vps([1.0, 0.0], [0, 0], torch.ones(2, 2), beliefs, ends, mode="past")
    with pytest.raises(ValueError, match="mask"):
        _vps([1.0, 0.0], [0, 0], None, beliefs, ends)


def test_vps_metrics_hand_computed():
    beliefs, ends = [[0.1, 0.5, 0.6], [0.1, 0.2], None], [[2, 6], [6], []]
    m = vps_metrics(beliefs, ends)
    assert m["vps/belief_first"] == pytest.approx(0.1)
    assert m["vps/belief_last"] == pytest.approx(0.4)
    assert m["vps/belief_mean"] == pytest.approx(0.3)
    assert m["vps/progress_mean"] == pytest.approx(0.2)
    assert m["vps/progress_std"] == pytest.approx(math.sqrt(0.03))
    assert m["vps/segments_per_response"] == pytest.approx(1.5)
    assert m["vps/credit_pos_frac"] == 1.0 and m["vps/credit_neg_frac"] == 0.0  # raw Δ all > 0
    g = vps_metrics(beliefs, ends, [0, 0, 0])  # normalised credit: one above the mean, two below
    assert g["vps/credit_pos_frac"] == pytest.approx(1 / 3)
    assert g["vps/credit_neg_frac"] == pytest.approx(2 / 3)
    assert g["vps/with_beliefs_frac"] == pytest.approx(2 / 3)
    assert all(isinstance(v, float) for v in g.values())
