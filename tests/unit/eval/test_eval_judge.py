"""`rlkit eval --judge`: a judge-graded suite (rlkit.eval.judged). The tiny judge runs on
transformers here; its verdict must be P(Y)/(P(Y)+P(N)) of a plain forward of the rendered
prompt, and the verdicts land in samples.jsonl and the metrics."""

from __future__ import annotations

import json
import math

import pytest

from rlkit.eval.cli import main

TEMPLATE = "Q: {prompt}\nA: {response}\nGold: {answer}\nCorrect (Y/N)? "


def _verdict(folder, text: str) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        logp = model(input_ids=ids).logits[0, -1].log_softmax(-1)
    y, n = (tok(t, add_special_tokens=False)["input_ids"][0] for t in ("Y", "N"))
    return math.exp(logp[y]) / (math.exp(logp[y]) + math.exp(logp[n]))


def test_judge_verdicts_in_samples_and_metrics(tmp_path, gsm8k_file, tiny_ckpt):
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": 0, "completion": "\\boxed{1234}"},
        {"id": 1, "completion": "\\boxed{8}"},
        {"id": 2, "completion": "ten"},
    ]))  # fmt: skip
    out = tmp_path / "out"
    args = ["--suite", "gsm8k", "--predictions", str(preds), "--data", str(gsm8k_file),
            "--out", str(out), "--no-progress", "--judge", str(tiny_ckpt), "--judge-engine",
            "hf", "--judge-template", TEMPLATE, "--judge-tokens", "Y", "N"]  # fmt: skip
    assert main(args) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    text = TEMPLATE.replace("{prompt}", "What is 3+4?").replace("{response}", "\\boxed{8}")
    assert samples[1]["judge_verdict"] == pytest.approx(
        _verdict(tiny_ckpt, text.replace("{answer}", "7")), abs=1e-4
    )
    verdicts = [s["judge_verdict"] for s in samples]
    assert metrics["judge/mean"] == pytest.approx(sum(verdicts) / 3)
    assert metrics["judge/parse_failures"] == 0.0
    agree = sum((v >= 0.5) == s["correct"] for v, s in zip(verdicts, samples)) / 3
    assert metrics["judge/agreement"] == pytest.approx(agree)


def test_judge_bad_tokens_one_clear_error(tmp_path, gsm8k_file, tiny_ckpt, capsys):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": 0, "completion": "x"}) + "\n")
    args = ["--suite", "gsm8k", "--predictions", str(preds), "--data", str(gsm8k_file),
            "--out", str(tmp_path / "o"), "--no-progress", "--judge", str(tiny_ckpt),
            "--judge-engine", "hf", "--judge-tokens", " Yes", " No"]  # fmt: skip
    assert main(args) == 2
    assert "verdict token ' Yes' is" in capsys.readouterr().err
