"""Atomic checkpoints (issue 12, point 4): a save that fails midway leaves the previous
checkpoint intact and loadable and no half-written folder; `trainer.keep_last` pruning."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rlkit.engines.model_io import load_folder_state, recover, write_hf_files
from rlkit.runtime.checkpoints import (
    latest_resumable,
    prune,
    read_run_state,
    step_folders,
    write_checkpoint,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from rlkit.data.tiny_model import build_tiny_model

    return build_tiny_model(
        tmp_path_factory.mktemp("ck") / "m", hidden_size=64, num_heads=1, intermediate_size=64
    )


def scaled(state: dict, k: float) -> dict:
    return {n: t * k for n, t in state.items()}


def hf_trainer(state: dict, tiny) -> SimpleNamespace:
    """A trainer whose checkpoint is the HF folder, written as TrainerGroup.save_checkpoint does."""
    return SimpleNamespace(save_checkpoint=lambda folder: write_hf_files(state, tiny, folder))


def half_then_raise(monkeypatch):
    """safetensors' save_file writes half a file, then the process 'crashes' (raises)."""

    def broken(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"\0" * 1000)
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)


def loads(folder) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model.model.embed_tokens.weight.detach()


def test_a_save_failing_midway_keeps_the_previous_checkpoint(tiny, tmp_path, monkeypatch):
    state = load_folder_state(tiny)
    ck = tmp_path / "checkpoints"
    write_checkpoint(ck, 1, hf_trainer(state, tiny))
    half_then_raise(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(ck, 2, hf_trainer(scaled(state, 2.0), tiny))
    with pytest.raises(OSError):  # overwriting the same step fails too: the old copy stays
        write_checkpoint(ck, 1, hf_trainer(scaled(state, 3.0), tiny))
    assert sorted(p.name for p in ck.iterdir()) == ["step_1"]  # nothing half-written
    assert torch.equal(loads(ck / "step_1"), state["model.embed_tokens.weight"])


def test_overwrite_replaces_whole_and_a_crash_between_renames_is_recovered(tiny, tmp_path):
    state = load_folder_state(tiny)
    out = tmp_path / "step_3"
    write_checkpoint(tmp_path, 3, hf_trainer(state, tiny))
    write_checkpoint(tmp_path, 3, hf_trainer(scaled(state, 2.0), tiny))
    assert torch.equal(loads(out), 2.0 * state["model.embed_tokens.weight"])
    # killed after moving the old copy aside, before the new one was renamed in
    out.rename(tmp_path / ".step_3.old")
    (tmp_path / ".step_3.tmp").mkdir()
    recover(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_3"]
    assert torch.equal(loads(out), 2.0 * state["model.embed_tokens.weight"])


def test_keep_last_prunes_the_oldest_complete_checkpoints(tmp_path):
    for n in (2, 10, 4, 6):
        (tmp_path / f"step_{n}").mkdir()
    (tmp_path / ".step_12.tmp").mkdir()  # an unfinished save is not a checkpoint
    assert [p.name for p in step_folders(tmp_path)] == ["step_2", "step_4", "step_6", "step_10"]
    assert prune(tmp_path, 0) == []
    assert [p.name for p in prune(tmp_path, 2)] == ["step_2", "step_4"]
    assert [p.name for p in step_folders(tmp_path)] == ["step_6", "step_10"]


def test_the_recorder_saves_each_step_once_and_keeps_the_last_n(tmp_path):
    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.controller.step_recorder import StepRecorder

    saves = []

    def save_checkpoint(folder):
        saves.append(folder)
        (Path(folder) / "model.safetensors").write_text("w")

    cfg = config_from_dict({"model": {"kind": "tiny"}, "trainer": {"keep_last": 2}})
    trainer = SimpleNamespace(save_checkpoint=save_checkpoint)
    rec = StepRecorder(cfg, trainer, None, str(tmp_path), run_state=lambda: {"step": len(saves)})
    for step in (1, 2, 3, 3):  # the final save repeats the last step
        rec.save(step)
    assert len(saves) == 3
    assert [p.name for p in step_folders(tmp_path)] == ["step_2", "step_3"]
    assert latest_resumable(tmp_path).name == "step_3"
    assert read_run_state(tmp_path / "step_3") == {"step": 3}


def test_a_crash_while_saving_the_trainer_state_leaves_the_last_checkpoint(tmp_path):
    """The trainer's DeepSpeed state, the critics and run_state.json go into one hidden
    folder renamed at the end: a failure in any part leaves no partial step folder."""

    def broken(folder):
        (Path(folder) / "trainer_state").mkdir()
        raise OSError("rank died mid-save")

    good = SimpleNamespace(save_checkpoint=lambda f: (Path(f) / "model.safetensors").touch())
    write_checkpoint(tmp_path, 2, good, run_state=lambda: {"step": 2})
    with pytest.raises(OSError, match="mid-save"):
        write_checkpoint(tmp_path, 4, SimpleNamespace(save_checkpoint=broken))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_2"]
    assert latest_resumable(tmp_path).name == "step_2"
