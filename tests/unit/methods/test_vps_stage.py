"""The `vps_probes` credit stage on a tiny model: engine beliefs through a fake probe service equal
the HF packed/naive beliefs; identical probes are sent once; samples without a gold answer, empty
or over-long keep plain GRPO; the estimator gets beliefs + segment ends; VPS metrics are logged."""

from __future__ import annotations

import math

import pytest
import torch

from rlkit.algos import compute_advantages
from rlkit.config.loader import config_from_dict
from rlkit.credit import CREDIT_STAGES, Services
from rlkit.credit.pipeline import new_batch, stage_names
from rlkit.engines.rollout_protocol import Completion
from rlkit.methods.vps import answer_beliefs
from rlkit.runtime.controller.groups import Group, Prompt, Sample

SUFFIX = "\nThe final answer is \\boxed{"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlkit.data.tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("vps") / "m", seed=3)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return str(path), tok, model


class FakeProbe:
    """services.probe over an HF model: logprobs of seq[start:] (what the workers return)."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, sequences, starts):
        self.calls.append((sequences, starts))
        out = []
        with torch.no_grad():
            for seq, s0 in zip(sequences, starts):
                logits = self.model(input_ids=torch.tensor([seq])).logits[0].float()
                lp = logits[:-1].log_softmax(-1).gather(-1, torch.tensor(seq[1:])[:, None])[:, 0]
                out.append(lp[s0 - 1 :].tolist())
        return out


def _cfg(path: str, advantage: str = "grpo_vps", max_model_len: int = 256, **knobs):
    return config_from_dict(
        {
            "model": {"kind": "path", "path": path},
            "rollout": {"max_model_len": max_model_len, "max_tokens": 64},
            "algo": {"advantage": advantage, "credit_kw": {"vps_probes": knobs}},
        }
    )


def _batch(tok, rows):
    """rows: [(prompt, answer or None, [response texts])] -> a CreditBatch."""
    groups = []
    for gid, (prompt, answer, texts) in enumerate(rows):
        fields = {} if answer is None else {"answer": answer}
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        g = Group(gid, Prompt(gid, prompt, ids, fields), len(texts), 0, 0)
        for j, text in enumerate(texts):
            resp = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            g.samples[j] = Sample(j, Completion(resp, [0.0] * len(resp)), 0, reward=float(j % 2))
        groups.append(g)
    return new_batch(groups)


TEXTS = ["3+4=7\n\n7*2=14\n\nso 14", "3+4=7\n\n7*2=15\n\nso 15", "3+4=7\n\n7*2=14\n\nso 14"]


def test_stage_is_declared_by_grpo_vps(tiny):
    path, _, _ = tiny
    assert stage_names(_cfg(path)) == ["vps_probes", "advantage"]


def test_engine_beliefs_match_hf_packed_and_naive(tiny):
    path, tok, model = tiny
    batch = _batch(tok, [("(3+4)*2=", "14", TEXTS), ("5+5=", None, ["10"])])
    probe = FakeProbe(model)
    stage = CREDIT_STAGES["vps_probes"](_cfg(path), min_tokens=2)
    stage.run(batch, Services(probe=probe, model_path=path))
    beliefs, ends = batch.estimator_kw["beliefs"], batch.estimator_kw["segment_ends"]
    assert beliefs[3] is None and ends[3] == []  # no gold answer: plain GRPO
    # three segments per response, split after each blank line; the EOS is left out
    assert ends[0] == [7, 15, len(TEXTS[0])]
    suffix = tok(SUFFIX, add_special_tokens=False)["input_ids"]
    answer = tok("14", add_special_tokens=False)["input_ids"]
    for i in range(3):
        s = batch.samples[i]
        resp = s.response_ids[:-1]
        for method in ("packed", "naive"):
            ref = answer_beliefs(model, s.prompt_ids, resp, [0, *ends[i]], suffix, answer, method)
            assert beliefs[i] == pytest.approx(ref, abs=1e-5)
    # sent once: p_0 (whole group), p_1 (equal first segments), responses 0 = 2: 1 + 1 + 2 + 2
    ((seqs, starts),) = probe.calls
    assert len(seqs) == 6 and len(set(map(tuple, seqs))) == 6
    assert all(len(x) - s0 == len(answer) for x, s0 in zip(seqs, starts))
    assert batch.stats["vps/probe_tokens"] == sum(map(len, seqs))


def test_estimator_gets_the_beliefs_and_stats_are_logged(tiny):
    path, tok, model = tiny
    batch = _batch(tok, [("(3+4)*2=", "14", TEXTS)])
    CREDIT_STAGES["vps_probes"](_cfg(path), min_tokens=2).run(
        batch, Services(probe=FakeProbe(model), model_path=path)
    )
    for key in ("belief_first", "belief_last", "progress_mean", "progress_std", "probe_time_s"):
        assert math.isfinite(batch.stats[f"vps/{key}"])
    assert batch.stats["vps/segments_per_response"] == 3.0
    pos, neg = batch.stats["vps/credit_pos_frac"], batch.stats["vps/credit_neg_frac"]
    assert pos > 0 and neg > 0 and pos + neg <= 1
    kw = dict(rewards=batch.rewards, group_ids=batch.group_ids, mask=batch.mask)
    adv = compute_advantages("grpo_vps", **kw, **batch.estimator_kw)
    grpo = compute_advantages("grpo", **kw)
    # tokens inside a segment share one advantage != GRPO's; the EOS token keeps GRPO's
    eos = len(batch.samples[0].response_ids) - 1
    assert adv[1, eos] == pytest.approx(float(grpo[1]))
    assert not torch.allclose(adv[1, :eos], grpo[1].expand(eos))


def test_method_packed_uses_the_initial_model(tiny):
    path, tok, model = tiny
    rows = [("2+2=", "4", TEXTS[:2])]
    engine, packed = _batch(tok, rows), _batch(tok, rows)
    CREDIT_STAGES["vps_probes"](_cfg(path), min_tokens=2).run(
        engine, Services(probe=FakeProbe(model), model_path=path)
    )
    stage = CREDIT_STAGES["vps_probes"](_cfg(path), method="packed", min_tokens=2)
    stage.run(packed, Services(probe=None, model_path=path))
    for a, b in zip(engine.estimator_kw["beliefs"], packed.estimator_kw["beliefs"]):
        assert a == pytest.approx(b, abs=1e-5)


def test_over_long_probes_and_other_estimators(tiny):
    path, tok, model = tiny
    batch = _batch(tok, [("(3+4)*2=", "14", TEXTS[:2])])
    probe = FakeProbe(model)
    # probes of 8 + 20 + 28 + 2 tokens exceed a 40-token engine: no beliefs, nothing sent
    CREDIT_STAGES["vps_probes"](_cfg(path, max_model_len=40), min_tokens=2).run(
        batch, Services(probe=probe, model_path=path)
    )
    assert batch.estimator_kw["beliefs"] == [None, None] and probe.calls == []
    assert batch.stats["vps/with_beliefs_frac"] == 0.0
    # with plain GRPO the stage (named in algo.credit) only logs: grpo gets no VPS inputs
    batch = _batch(tok, [("(3+4)*2=", "14", TEXTS[:2])])
    CREDIT_STAGES["vps_probes"](_cfg(path, advantage="grpo"), min_tokens=2).run(
        batch, Services(probe=FakeProbe(model), model_path=path)
    )
    assert batch.estimator_kw == {} and batch.stats["vps/with_beliefs_frac"] == 1.0


def test_bad_method_is_refused(tiny):
    with pytest.raises(ValueError, match="method"):
        CREDIT_STAGES["vps_probes"](_cfg(tiny[0]), method="magic")
