"""sft_warm_start: the loss goes down, the output is a loadable HF folder, writes are atomic."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rlkit.data import sft as sft_mod  # noqa: E402
from rlkit.data.arithmetic import make_arithmetic_dataset  # noqa: E402
from rlkit.data.tiny_model import build_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("base") / "m", seed=0)


ROWS = make_arithmetic_dataset(64, seed=0, max_operand=9, ops="+")


def _loss(model_dir) -> float:
    """Completion loss of ROWS under the model in model_dir (independent of sft's own log)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    batch = sft_mod._collate(sft_mod._encode(tok, ROWS, sft_mod.format_target), tok.pad_token_id)
    with torch.no_grad():
        return sft_mod.completion_loss(model, *batch).item()


def test_sft_lowers_loss_and_saves_loadable_folder(base, tmp_path):
    out = sft_mod.sft_warm_start(
        base, ROWS, steps=20, lr=3e-3, batch_size=16, seed=0, out_dir=tmp_path / "sft", log=None
    )
    assert out == tmp_path / "sft"
    assert _loss(out) < 0.7 * _loss(base)
    info = json.loads((out / sft_mod.SFT_INFO_FILE).read_text())
    assert info["steps"] == 20 and info["last_loss"] < info["first_loss"]
    assert (out / "tokenizer.json").is_file() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft"]  # no temporary leftovers


def test_sft_is_deterministic(base, tmp_path):
    from safetensors.torch import load_file

    kw = dict(steps=3, lr=1e-3, batch_size=8, seed=5, log=None)
    a = sft_mod.sft_warm_start(base, ROWS, out_dir=tmp_path / "a", **kw)
    b = sft_mod.sft_warm_start(base, ROWS, out_dir=tmp_path / "b", **kw)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all(torch_equal(wa[k], wb[k]) for k in wa)


def test_sft_shows_step_progress_with_the_loss(base, tmp_path, capsys):
    """SFT takes minutes a step on small CPUs: a bar counts the steps on stderr (silent with
    log=None, as above)."""
    sft_mod.sft_warm_start(
        base, ROWS, steps=3, lr=1e-3, batch_size=8, seed=0, out_dir=tmp_path / "p", log=print
    )
    err = capsys.readouterr().err
    assert "sft" in err and "3/3" in err
    assert "loss" in err


def torch_equal(x, y) -> bool:
    return bool((x == y).all())


def test_target_accuracy_stops_early(base, tmp_path):
    out = sft_mod.sft_warm_start(
        base, ROWS, steps=50, lr=1e-3, batch_size=8, seed=0, out_dir=tmp_path / "o",
        target_accuracy=0.0, eval_every=2, eval_rows=ROWS[:4], log=None,
    )  # fmt: skip
    info = json.loads((out / sft_mod.SFT_INFO_FILE).read_text())
    assert info["steps"] == 2 and info["greedy_accuracy"] is not None


def test_failure_midway_leaves_no_half_written_dir(base, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = sft_mod.completion_loss

    def failing_loss(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("interrupted")
        return real(*args)

    monkeypatch.setattr(sft_mod, "completion_loss", failing_loss)
    with pytest.raises(RuntimeError, match="interrupted"):
        sft_mod.sft_warm_start(
            base, ROWS, steps=5, lr=1e-3, batch_size=8, seed=0, out_dir=tmp_path / "o", log=None
        )
    assert list(tmp_path.iterdir()) == []


def test_failure_while_saving_keeps_previous_output(base, tmp_path, monkeypatch):
    out = sft_mod.sft_warm_start(
        base, ROWS, steps=1, lr=1e-3, batch_size=8, seed=0, out_dir=tmp_path / "o", log=None
    )
    before = (out / "model.safetensors").read_bytes()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sft_mod.json, "dumps", broken_dump)  # fails after the weights are written
    with pytest.raises(OSError, match="disk full"):
        sft_mod.sft_warm_start(
            base, ROWS, steps=2, lr=1e-3, batch_size=8, seed=0, out_dir=out, log=None
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]
    assert (out / "model.safetensors").read_bytes() == before


def test_bad_arguments_rejected_before_any_write(base, tmp_path):
    with pytest.raises(ValueError):
        sft_mod.sft_warm_start(
            base, ROWS, steps=0, lr=1e-3, batch_size=8, seed=0, out_dir=tmp_path / "o", log=None
        )
    assert not (tmp_path / "o").exists()
