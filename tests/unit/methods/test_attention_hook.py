"""The ``attention_credit`` token hook (arXiv 2510.13554) on a tiny HF model without DeepSpeed:
what it returns equals the pure path (attention_signals -> attention_gammas) shifted into the
trainer's target frame, 1.0 outside the response, for each strategy; the weights reach the policy
loss; the hook is selected by name from a recipe; both shipped recipes load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rlkit.algos.loss_terms import LossContext, LossTerm, make_token_hook, total_loss
from rlkit.config.loader import config_from_dict, load_recipe
from rlkit.engines.logprobs import token_logprobs
from rlkit.engines.train_batch import TrainSample, collate
from rlkit.methods.attention_credit import (
    AttentionCreditHook,
    attention_credit,
    attention_gammas,
    attention_signals,
    default_layers,
    input_frame,
)

ROOT = Path(__file__).resolve().parents[3]
# Short FAI band / window so that responses of ~20 tokens get non-trivial signals.
KNOBS = {"window": 4, "fai_lo": 2, "fai_hi": 12}


def _model() -> Qwen2ForCausalLM:
    """4 layers, 4 query / 2 kv heads, eager attention, large init (heads differ clearly)."""
    cfg = Qwen2Config(
        vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, initializer_range=0.3,
        attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    return Qwen2ForCausalLM(cfg)


def _samples() -> list[TrainSample]:
    """Three rows with different prompt and response lengths (right padding), advantages ±."""
    gen = torch.Generator().manual_seed(3)
    shapes, advs = [(5, 24), (9, 17), (3, 12)], [1.0, -1.0, 0.5]
    out = []
    for (p, r), a in zip(shapes, advs, strict=True):
        ids = torch.randint(1, 64, (p + r,), generator=gen).tolist()
        out.append(TrainSample(ids[:p], ids[p:], [-1.0] * r, a))
    return out


def _hook_forward(hook, model, batch):
    with hook.capture(model):
        logp, logits = token_logprobs(model, batch["input_ids"], batch["attention_mask"])
    return logp, logits, hook.streams(batch)


def test_input_frame_finds_each_rows_response_start():
    samples = _samples()
    batch = collate(samples)
    resp, starts = input_frame(batch)
    assert starts == [len(s.prompt_ids) for s in samples]
    for i, s in enumerate(samples):
        row = torch.zeros(batch["input_ids"].shape[1], dtype=torch.bool)
        row[len(s.prompt_ids) : len(s.prompt_ids) + len(s.response_ids)] = True
        assert torch.equal(resp[i], row)
    empty = {"input_ids": torch.zeros(1, 6), "response_mask": torch.zeros(1, 5)}
    assert input_frame(empty)[1] == [6]  # no response: start = L (empty)


@pytest.mark.parametrize("strategy", ["preplan", "anchor", "coupled"])
def test_streams_equal_pure_gammas_shifted_to_target_frame(strategy):
    model, samples = _model(), _samples()
    batch = collate(samples)
    hook = attention_credit(strategy=strategy, **KNOBS)
    _, _, streams = _hook_forward(hook, model, batch)
    weight = streams["adv_weight"]
    assert set(streams) == {"adv_weight"} and weight.shape == batch["response_mask"].shape
    assert hook._cap is None  # captured q/k released at the end of streams()

    resp, starts = input_frame(batch)
    sig = attention_signals(
        model, batch["input_ids"], starts, attention_mask=batch["attention_mask"], **KNOBS
    )
    gammas = attention_gammas(sig["waad"], sig["fai"], resp, strategy)
    torch.testing.assert_close(weight, gammas[:, 1:])
    # target position t carries γ of input token t+1; outside the response the weight is 1.0
    for i, s in enumerate(samples):
        lo, n = len(s.prompt_ids), len(s.response_ids)
        torch.testing.assert_close(weight[i, lo - 1 : lo - 1 + n], gammas[i, lo : lo + n])
    outside = batch["response_mask"] == 0
    assert torch.all(weight[outside] == 1.0)
    inside = weight[~outside]
    assert inside.max() > 1.0 and inside.min() >= 1.0  # some tokens amplified, none shrunk

    m = hook.metrics()
    assert m["attn_credit/frac_amplified"] == pytest.approx(float((inside > 1).float().mean()))
    assert m["attn_credit/mean_gamma"] == pytest.approx(float(inside.mean()), rel=1e-6)
    assert 0.0 <= m["attn_credit/preplan_anchor_jaccard"] <= 1.0
    assert m["attn_credit/signal_s"] > 0 and m["attn_credit/signal_over_forward"] > 0


def test_strategies_differ_and_amp_scales():
    model, batch = _model(), collate(_samples())
    w = {s: _hook_forward(attention_credit(s, **KNOBS), model, batch)[2]["adv_weight"]
         for s in ("preplan", "anchor", "coupled")}  # fmt: skip
    assert not torch.equal(w["preplan"], w["anchor"])
    assert set(w["anchor"].unique().tolist()) == {1.0, 1.5}
    assert set(w["coupled"].unique().tolist()) <= {1.0, 1.25, 1.5, 1.75}
    big = _hook_forward(attention_credit("anchor", amp=3.0, **KNOBS), model, batch)[2]
    torch.testing.assert_close(big["adv_weight"] - 1, (w["anchor"] - 1) * 4)


def _policy_grad(model, batch, hook=None, adv_scale=None):
    """Gradient of the policy term (ppo, token-mean) w.r.t. the model's parameters."""
    model.zero_grad()
    if hook is not None:
        logp, logits, streams = _hook_forward(hook, model, batch)
        batch = {**batch, **streams}
    else:
        logp, logits = token_logprobs(model, batch["input_ids"], batch["attention_mask"])
    if adv_scale is not None:
        batch = {**batch, "advantages": batch["advantages"] * adv_scale}
    batch = {**batch, "behavior_logprobs": logp.detach()}
    norms = {"num_tokens": float(batch["response_mask"].sum()), "num_seqs": 3.0, "max_len": 30.0}
    loss, _ = total_loss(
        [LossTerm("policy")], LossContext(batch, logp, logits, "token-mean", norms)
    )
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_weights_reach_the_policy_loss_gradient():
    model, batch = _model(), collate(_samples())
    plain = _policy_grad(model, batch)
    hook = attention_credit("coupled", **KNOBS)
    hooked = _policy_grad(model, batch, hook)
    assert not torch.allclose(plain, hooked, atol=1e-6)
    # same as multiplying the advantages by γ by hand (Ã = γ·A inside the PPO min)
    weight = _hook_forward(attention_credit("coupled", **KNOBS), model, batch)[2]["adv_weight"]
    manual = _policy_grad(model, batch, adv_scale=weight)
    torch.testing.assert_close(hooked, manual, rtol=1e-5, atol=1e-7)


def test_selected_by_name_from_a_recipe_with_checked_knobs():
    algo = config_from_dict(
        {
            "model": {"kind": "tiny"},
            "algo": {"token_hook": "attention_credit", "token_hook_kw": {"strategy": "anchor"}},
        }
    ).algo
    hook = make_token_hook(algo.token_hook, algo.token_hook_kw)
    assert isinstance(hook, AttentionCreditHook) and hook.strategy == "anchor"
    assert hook.gammas.top_frac == 0.4 and hook.signals.fai_hi == 100
    with pytest.raises(ValueError, match="strategy"):
        make_token_hook("attention_credit", {"strategy": "random"})
    with pytest.raises(TypeError):
        make_token_hook("attention_credit", {"windw": 3})
    with pytest.raises(RuntimeError, match="without a captured forward"):
        attention_credit().streams(collate(_samples()))


def test_default_layers_cover_small_models():
    """The integration tests' tiny model has 2 layers: the default choice must not be empty."""
    assert default_layers(2) == [0, 1]
    assert len(default_layers(30)) == 5 and default_layers(36) == [12, 15, 18, 21, 24]


@pytest.mark.parametrize("name", ["attention_credit_cpu.yaml", "attention_credit_gpu_cluster.yaml"])
def test_recipes_load_and_select_the_hook(name):
    cfg = load_recipe(ROOT / "recipes" / name)
    assert cfg.algo.token_hook == "attention_credit" and cfg.algo.advantage == "grpo"
    assert cfg.algo.token_hook_kw["strategy"] == "coupled"
    assert isinstance(make_token_hook(cfg.algo.token_hook, cfg.algo.token_hook_kw),
                      AttentionCreditHook)  # fmt: skip
