"""Atomic checkpoints (issue 12, point 4): a save that fails midway leaves the previous
checkpoint intact and loadable and no half-written folder; `trainer.keep_last` pruning (issue
23: default 2, the newest always kept); weight-only checkpoints (`trainer.save_optimizer:
false`) and the resume from one, which says it is not exact; `ckpt/bytes`, `ckpt/save_s`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rlkit.engines.model_io import load_folder_state, recover, write_hf_files
from rlkit.runtime.checkpoints import (
    folder_bytes,
    has_trainer_state,
    latest_resumable,
    prune,
    read_run_state,
    start_checkpoint,
    step_folders,
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
    """A trainer whose checkpoint is the HF folder, written as TrainerGroup.start_save does
    (here at once)."""
    return writes_at_once(lambda folder, optimizer=True: write_hf_files(state, tiny, folder))


def writes_at_once(save) -> SimpleNamespace:
    """The trainer's save interface over `save(folder, optimizer)`, done when it returns."""
    return SimpleNamespace(start_save=save, save_done=lambda: True)


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
    start_checkpoint(ck, 1, hf_trainer(state, tiny)).wait()
    half_then_raise(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        start_checkpoint(ck, 2, hf_trainer(scaled(state, 2.0), tiny)).wait()
    with pytest.raises(OSError):  # overwriting the same step fails too: the old copy stays
        start_checkpoint(ck, 1, hf_trainer(scaled(state, 3.0), tiny)).wait()
    assert sorted(p.name for p in ck.iterdir()) == ["step_1"]  # nothing half-written
    assert torch.equal(loads(ck / "step_1"), state["model.embed_tokens.weight"])


def test_overwrite_replaces_whole_and_a_crash_between_renames_is_recovered(tiny, tmp_path):
    state = load_folder_state(tiny)
    out = tmp_path / "step_3"
    start_checkpoint(tmp_path, 3, hf_trainer(state, tiny)).wait()
    start_checkpoint(tmp_path, 3, hf_trainer(scaled(state, 2.0), tiny)).wait()
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

    def save_checkpoint(folder, optimizer=True):
        saves.append(folder)
        (Path(folder) / "model.safetensors").write_text("w")

    cfg = config_from_dict({"model": {"kind": "tiny"}, "trainer": {"keep_last": 2}})
    trainer = writes_at_once(save_checkpoint)
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

    def broken(folder, optimizer=True):
        (Path(folder) / "trainer_state").mkdir()
        raise OSError("rank died mid-save")

    good = writes_at_once(lambda f, optimizer=True: (Path(f) / "model.safetensors").touch())
    start_checkpoint(tmp_path, 2, good, run_state=lambda: {"step": 2}).wait()
    with pytest.raises(OSError, match="mid-save"):
        start_checkpoint(tmp_path, 4, writes_at_once(broken)).wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_2"]
    assert latest_resumable(tmp_path).name == "step_2"


def test_the_newest_checkpoint_is_always_kept_and_two_by_default(tmp_path):
    from rlkit.config.loader import config_from_dict

    assert config_from_dict({"model": {"kind": "tiny"}}).trainer.keep_last == 2
    for n in (1, 2, 3):
        (tmp_path / f"step_{n}").mkdir()
    assert [p.name for p in prune(tmp_path, 1)] == ["step_1", "step_2"]
    assert [p.name for p in step_folders(tmp_path)] == ["step_3"]
    assert prune(tmp_path, 1) == []  # the newest (and only) one stays


class FakeEngine:
    """What TrainerRank's save path calls on a DeepSpeed engine (its files go through
    `checkpoint_engine`, as DeepSpeed's do), counting the state saves."""

    def __init__(self):
        self.saved = []
        self.checkpoint_engine = None  # the snapshot swaps in its own
        self.weight = torch.ones(1024)

    def save_checkpoint(self, folder, tag):
        self.saved.append(tag)
        self.checkpoint_engine.makedirs(f"{folder}/{tag}", exist_ok=True)
        self.checkpoint_engine.save({"w": self.weight}, f"{folder}/{tag}/optim_states.pt")


def rank_with(state: dict, tiny):
    """A TrainerRank (not a Ray actor) over a stand-in trainer that holds `state`."""
    from rlkit.runtime.actors.trainer_group import TrainerRank

    rank = TrainerRank()
    rank.trainer = SimpleNamespace(
        export_state=lambda: state, model_path=str(tiny), engine=FakeEngine(), minis=1, epochs=1
    )
    return rank


def test_a_weight_only_checkpoint_has_the_weights_and_no_trainer_state(tiny, tmp_path):
    state = load_folder_state(tiny)
    rank = rank_with(scaled(state, 2.0), tiny)
    full = start_checkpoint(tmp_path, 1, rank, run_state=lambda: {"step": 1}).wait()
    light = start_checkpoint(
        tmp_path, 2, rank, run_state=lambda: {"step": 2}, optimizer=False
    ).wait()
    assert rank.trainer.engine.saved == ["engine0"]  # the optimizer state: the full save only
    assert has_trainer_state(full) and not has_trainer_state(light)
    # the same files but trainer_state/ (optimizer partitions and RNG states)
    assert folder_bytes(full) - folder_bytes(light) == folder_bytes(full / "trainer_state") > 4096
    assert torch.equal(loads(light), 2.0 * state["model.embed_tokens.weight"])
    assert latest_resumable(tmp_path) == light  # still a resume point, with run_state.json


def test_the_recorder_saves_weight_only_and_logs_size_and_time(tmp_path):
    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.controller.step_recorder import StepRecorder

    calls = []

    def save_checkpoint(folder, optimizer=True):
        calls.append(optimizer)
        (Path(folder) / "model.safetensors").write_bytes(b"w" * 100)

    over = {"save_every": 1, "save_optimizer": False, "keep_last": 0}
    cfg = config_from_dict({"model": {"kind": "tiny"}, "trainer": over})
    logged = []
    logger = SimpleNamespace(log=logged.append)
    trainer = writes_at_once(save_checkpoint)
    rec = StepRecorder(cfg, trainer, logger, str(tmp_path), run_state=lambda: {"step": 1})
    assert "ckpt/bytes" not in rec.record(1, {"loss": 0.5}, {"tokens": 10})
    rec.wait_saved()  # written in the background: reported with the next record
    out = rec.record(2, {"loss": 0.5}, {"tokens": 10})
    assert calls == [False, False]
    run_state_bytes = (tmp_path / "step_1" / "run_state.json").stat().st_size
    assert out["ckpt/step"] == 1.0 and out["ckpt/bytes"] == 100 + run_state_bytes
    assert 0.0 <= out["ckpt/blocked_s"] <= out["ckpt/save_s"] < 60.0
    assert logged[-1]["ckpt/bytes"] == out["ckpt/bytes"]


def test_a_resume_from_a_weight_only_checkpoint_says_it_is_not_exact(tmp_path):
    """One console line, `resume/exact` = 0 in the next record, and the count in the
    recorder's state (so later checkpoints carry it); the trainer rebuilds from the weights."""
    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.controller.step_recorder import StepRecorder
    from rlkit.runtime.resume import resume_from

    cfg = config_from_dict({"model": {"kind": "tiny"}})
    rec = StepRecorder(cfg, None, SimpleNamespace(log=lambda r: None), str(tmp_path))
    ck = tmp_path / "step_4"
    ck.mkdir()
    (ck / "run_state.json").write_text('{"step": 4}')
    loaded, published, lines = [], [], []

    def load_state_dict(state):
        spine.step = state["step"]

    spine = SimpleNamespace(
        trainer=SimpleNamespace(load_state=loaded.append),
        critic=None,
        load_state_dict=load_state_dict,
        publisher=SimpleNamespace(publish=published.append),
        recorder=rec,
        step=0,
    )
    resume_from(spine, ck, log=lines.append)
    assert loaded == [str(ck)] and published == [4]
    assert len(lines) == 1 and "NOT exact" in lines[0] and "save_optimizer" in lines[0]
    out = rec.record(5, {}, {"tokens": 1})
    assert out["resume/exact"] == 0.0 and out["resume/inexact_resumes"] == 1.0
    assert "resume/exact" not in rec.record(6, {}, {"tokens": 1})
    assert rec.state_dict()["inexact_resumes"] == 1
    (ck / "trainer_state").mkdir()  # a full checkpoint: exact, no warning
    resume_from(spine, ck, log=lines.append)
    assert (
        lines[-1].endswith("at step 4") and rec.record(5, {}, {"tokens": 1})["resume/exact"] == 1.0
    )


def test_a_rank_resumes_a_weight_only_checkpoint_by_rebuilding_from_its_weights(
    tiny, tmp_path, monkeypatch
):
    """TrainerRank.load_state: trainer_state/ -> DeepSpeed load; none -> rebuilt from the
    checkpoint's HF files (the run's model path kept for later saves), LR schedule advanced."""
    from rlkit.engines import deepspeed_engine

    built, stepped = [], []

    class Rebuilt:
        def __init__(self, rank, world, addr, port, model_path, cfg):
            built.append(model_path)
            self.model_path, self.minis, self.epochs = model_path, 2, 1
            self.engine = SimpleNamespace(
                lr_scheduler=SimpleNamespace(step=lambda: stepped.append(1))
            )

    monkeypatch.setattr(deepspeed_engine, "DeepSpeedPolicyTrainer", Rebuilt)
    rank = rank_with(load_folder_state(tiny), tiny)
    rank._trainer_args = (0, 1, "127.0.0.1", 1, None)
    ck = start_checkpoint(tmp_path, 3, rank, optimizer=False).wait()
    rank.load_state(str(ck))
    assert built == [str(ck)] and rank.trainer.model_path == str(tiny)
    assert len(stepped) == 3 * 2  # steps x optimizer updates per step
