"""Attention-based credit (arXiv 2510.13554): signals vs a naive computation from eager
``output_attentions=True`` maps (Qwen2 and Llama, GQA, right padding), chunking, the capture hook
(training forward, sdpa, peft LoRA, unhookable models), and γ for the three strategies."""

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers.modeling_utils import AttentionInterface

from rlkit.methods.attention_credit import (
    AttentionCaptureError,
    attention_gammas,
    attention_signals,
    capture_qk,
    default_layers,
    gamma_metrics,
    signals_from_qk,
)

FAMILIES = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
N = 40


def _model(family: str, attn: str = "eager", seed: int = 0) -> nn.Module:
    """4 layers, 4 query heads over 2 kv heads (GQA); large init so heads differ clearly."""
    cfg_cls, model_cls = FAMILIES[family]
    cfg = cfg_cls(
        vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, initializer_range=0.3,
        attn_implementation=attn,
    )  # fmt: skip
    torch.manual_seed(seed)
    return model_cls(cfg).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Two rows; row 1 is right-padded to valid length 29."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 64, (2, N), generator=gen)
    mask = torch.ones(2, N, dtype=torch.long)
    mask[1, 29:] = 0
    return ids, mask, [12, 7]


def _naive(model, ids, mask, starts, layers, window=10, lo=10, hi=100, frac_l=0.3, frac_g=0.3):
    """The definitions, literally, from the eager attention maps (float64, Python loops)."""
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    att = torch.cat([out.attentions[i] for i in layers], dim=1).double()
    waad, fai = (
        torch.zeros(ids.shape, dtype=torch.float64),
        torch.zeros(ids.shape, dtype=torch.float64),
    )
    for b, r in enumerate(starts):
        nv = int(mask[b].sum())
        a = att[b, :, :nv, :nv]
        lag = (torch.arange(nv)[:, None] - torch.arange(nv)[None, :]).double()
        d = (a * lag.clamp(min=0)).sum(-1)[:, r:].mean(-1).tolist()
        h = len(d)
        loc = sorted(range(h), key=lambda i: (d[i], i))[: max(1, int(frac_l * h))]
        glob = sorted(range(h), key=lambda i: (-d[i], i))[: max(1, int(frac_g * h))]
        a_loc, a_glob = a[loc].mean(0), a[glob].mean(0)
        for t in range(nv):
            waad[b, t] = sum(a_loc[t, s] * min(t - s, window) for s in range(t + 1))
        for s in range(nv):
            rows = range(s + lo, min(nv - 1, s + hi) + 1)
            fai[b, s] = sum(a_glob[t, s] for t in rows) / len(rows) if len(rows) else 0.0
    return waad, fai


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_signals_match_eager_attention_maps(family):
    model, (ids, mask, starts) = _model(family), _batch()
    got = attention_signals(model, ids, starts, attention_mask=mask)  # default layers [1, 2]
    waad, fai = _naive(model, ids, mask, starts, [1, 2])
    torch.testing.assert_close(got["waad"].double(), waad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["fai"].double(), fai, rtol=1e-5, atol=1e-5)
    assert got["fai"][1, 29:].abs().sum() == 0 and got["waad"][1, 29:].abs().sum() == 0
    kw = dict(window=3, fai_lo=2, fai_hi=9, local_frac=0.5, global_frac=0.2)
    got = attention_signals(model, ids, starts, layers=[0, 3], attention_mask=mask, **kw)
    waad, fai = _naive(model, ids, mask, starts, [0, 3], 3, 2, 9, 0.5, 0.2)
    torch.testing.assert_close(got["waad"].double(), waad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["fai"].double(), fai, rtol=1e-5, atol=1e-5)


def test_sdpa_capture_equals_eager_and_hook_is_removed():
    original = AttentionInterface.get_interface
    ids, mask, starts = _batch()
    eager = attention_signals(_model("qwen2", "eager"), ids, starts, attention_mask=mask)
    sdpa = attention_signals(_model("qwen2", "sdpa"), ids, starts, attention_mask=mask)
    torch.testing.assert_close(sdpa["waad"], eager["waad"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sdpa["fai"], eager["fai"], rtol=1e-5, atol=1e-5)
    assert AttentionInterface.get_interface is original


def test_chunked_equals_unchunked_with_gqa():
    gen = torch.Generator().manual_seed(3)
    qs = [torch.randn(2, 6, 50, 8, generator=gen) for _ in range(2)]
    ks = [torch.randn(2, 2, 50, 8, generator=gen) for _ in range(2)]
    mask = torch.ones(2, 50, dtype=torch.long)
    mask[0, 41:] = 0
    kw = dict(scalings=[0.5, 0.3], attention_mask=mask, fai_lo=4, fai_hi=20)
    whole = signals_from_qk(qs, ks, [20, 9], chunk_size=1000, **kw)
    for chunk in (1, 7, 16):
        part = signals_from_qk(qs, ks, [20, 9], chunk_size=chunk, **kw)
        for name in ("waad", "fai", "look_back"):
            torch.testing.assert_close(part[name], whole[name], rtol=1e-6, atol=1e-6)


def test_capture_in_training_forward_is_detached_and_matches():
    model, (ids, mask, starts) = _model("llama"), _batch()
    model.train()
    with capture_qk(model, [1, 2]) as cap:
        loss = model(input_ids=ids, attention_mask=mask).logits.logsumexp(-1).mean()
        qs, ks, scalings = cap.ordered()
    loss.backward()
    assert all(not q.requires_grad for q in qs) and ks[0].shape[1] == 2  # kv heads not repeated
    got = signals_from_qk(qs, ks, starts, scalings=scalings, attention_mask=mask)
    ref = attention_signals(model, ids, starts, layers=[1, 2], attention_mask=mask)
    torch.testing.assert_close(got["waad"], ref["waad"])
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_peft_lora_delta_is_included():
    peft = pytest.importorskip("peft")
    model, (ids, mask, starts) = _model("qwen2"), _batch()
    base = attention_signals(model, ids, starts, attention_mask=mask)
    cfg = peft.LoraConfig(r=4, target_modules=["q_proj", "k_proj"], init_lora_weights=False)
    lora = peft.get_peft_model(model, cfg).eval()
    got = attention_signals(lora, ids, starts, attention_mask=mask)
    waad, fai = _naive(lora, ids, mask, starts, [1, 2])
    torch.testing.assert_close(got["waad"].double(), waad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["fai"].double(), fai, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got["waad"], base["waad"])  # the LoRA delta changed q/k


class _PlainAttention(nn.Module):
    """Looks like an HF attention module but computes attention itself (no interface call)."""

    def __init__(self, layer_idx: int):
        super().__init__()
        self.layer_idx, self.proj = layer_idx, nn.Linear(4, 4)

    def forward(self, x):
        return torch.softmax(self.proj(x) @ x.transpose(-1, -2), -1) @ x


def test_unhookable_models_raise_clearly():
    with pytest.raises(AttentionCaptureError, match="no attention modules"):
        attention_signals(nn.Linear(4, 4), torch.zeros(1, 3, dtype=torch.long), [1])
    model = nn.Sequential(_PlainAttention(0), _PlainAttention(1))
    with capture_qk(model, [1]) as cap:
        model(torch.randn(1, 3, 4))
        with pytest.raises(AttentionCaptureError, match="not captured"):
            cap.ordered()


def test_default_layers():
    assert default_layers(4) == [1, 2]
    assert default_layers(28) == [9, 11, 14, 16, 18]
    assert default_layers(36) == [12, 15, 18, 21, 24]
    assert default_layers(2) == [0, 1] and default_layers(1) == [0]


def _gamma_case():
    """Row 0: prompt of 2 then a 10-token response; row 1: prompt 1, response 5, 1 pad.
    Non-response positions hold large values that must be ignored."""
    waad = torch.full((2, 12), 50.0)
    fai = torch.full((2, 12), 50.0)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    waad[0, 2:] = torch.tensor([5.0, 1, 6, 6, 0, 2, 2, 7, 1, 1])  # Δ = 4 5 0 6 2 0 5 6 0 0
    fai[0, 2:] = torch.tensor([0.5, 0, 0.7, 0, 0.9, 0, 0.1, 0, 0.8, 0.2])
    waad[1, 1:6] = torch.tensor([0.0, 3, 0, 3, 0])  # Δ = 3 3 3 3 0 (ties: earliest wins)
    fai[1, 1:6] = torch.tensor([0.0, 1, 0, 0, 0.9])
    mask[0, 2:] = True
    mask[1, 1:6] = True
    return waad, fai, mask


def _expect(row0, row1):
    out = torch.ones(2, 12)
    out[0, 2:], out[1, 1:6] = torch.tensor(row0), torch.tensor(row1)
    return out


def test_gammas_preplan_and_anchor():
    waad, fai, mask = _gamma_case()
    # n_top = floor(0.4 n): 4 of 10, 2 of 5. Preplan by Δ (tie 6/6 and 5/5: earlier first).
    expect = _expect([1, 1.5, 1, 1.5, 1, 1, 1.5, 1.5, 1, 1], [1.5, 1.5, 1, 1, 1])
    assert torch.equal(attention_gammas(waad, fai, mask, "preplan"), expect)
    expect = _expect([1.5, 1, 1.5, 1, 1.5, 1, 1, 1, 1.5, 1], [1, 1.5, 1, 1, 1.5])
    assert torch.equal(attention_gammas(waad, fai, mask, "anchor"), expect)
    expect = _expect([1, 2, 1, 2, 1, 1, 1, 2, 1, 1], [2, 1, 1, 1, 1])  # amp 2, top 30%
    assert torch.equal(attention_gammas(waad, fai, mask, "preplan", amp=2.0, top_frac=0.3), expect)


def test_gammas_coupled():
    waad, fai, mask = _gamma_case()
    # Row 0: τ_waad = median = 2, τ_Δ = 5; anchors {0, 2, 4, 8}. 4 and 8 are dominated
    # (WAAD 0, 1 <= 2; window max Δ 6 at u = 3, 7 = intro); 2 has WAAD 6 > 2; 0 has no window.
    # Row 1: τ_waad = 0, τ_Δ = 3; anchors {1, 4}: 4 dominated with intro = 1 (earliest of the
    # tied Δ = 3), which is also a non-dominated anchor, so γ_1 = 1 + 0.5 + 0.25.
    expect = _expect([1.5, 1, 1.5, 1.25, 1.25, 1, 1, 1.25, 1.25, 1], [1, 1.75, 1, 1, 1.25])
    assert torch.equal(attention_gammas(waad, fai, mask, "coupled"), expect)
    expect = _expect([2, 1, 2, 1.2, 1.8, 1, 1, 1.2, 1.8, 1], [1, 2.2, 1, 1, 1.8])
    got = attention_gammas(waad, fai, mask, "coupled", amp=2.0, alpha=0.2)
    torch.testing.assert_close(got, expect)
    no_d = attention_gammas(waad, fai, mask, "coupled", tau_waad=-1.0)  # nothing dominated
    assert torch.equal(no_d, attention_gammas(waad, fai, mask, "anchor"))
    # k = 1: row 0 unchanged (windows Δ_3 = 6, Δ_7 = 6); row 1's intro moves from 1 to 3
    expect = _expect([1.5, 1, 1.5, 1.25, 1.25, 1, 1, 1.25, 1.25, 1], [1, 1.5, 1, 1.25, 1.25])
    assert torch.equal(attention_gammas(waad, fai, mask, "coupled", k=1), expect)
    with pytest.raises(ValueError, match="unknown strategy"):
        attention_gammas(waad, fai, mask, "random")


def test_gamma_metrics():
    waad, fai, mask = _gamma_case()
    g = attention_gammas(waad, fai, mask, "coupled")
    m = gamma_metrics(g, mask, waad=waad, fai=fai)
    assert m["attn_credit/frac_amplified"] == pytest.approx(8 / 15)
    assert m["attn_credit/mean_gamma"] == pytest.approx(18 / 15)
    assert m["attn_credit/max_gamma"] == pytest.approx(1.75)
    # preplan {3,7,1,6} | {0,1}, anchors {0,2,4,8} | {1,4}: one shared token (row 1, index 1)
    assert m["attn_credit/preplan_anchor_jaccard"] == pytest.approx(1 / 11)
    assert m["attn_credit/anchor_in_preplan"] == pytest.approx(1 / 6)
