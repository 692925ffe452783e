"""Checkpoints written in the background (issue 23 item 2): the snapshot is taken at the step
boundary, the write overlaps the next train step, the next save waits for the previous one,
and a write killed midway leaves the previous checkpoint loadable (atomic folder rule)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from rlkit.runtime.checkpoints import latest_resumable, read_run_state, step_folders


class GatedTrainer:
    """A trainer with the rank group's save interface whose writes wait for `gate`; its
    `weights` stand for the live parameters the next step changes."""

    def __init__(self):
        self.gate = threading.Event()
        self.weights = {"w": 1.0}
        self.writes: list[threading.Thread] = []
        self.events: list[str] = []

    def start_save(self, folder: str, optimizer: bool = True) -> None:
        snapshot = dict(self.weights)  # taken now, at the step boundary

        def write():
            self.gate.wait(10)
            (Path(folder) / "weights.txt").write_text(repr(snapshot))
            self.events.append("written")

        self.writes.append(threading.Thread(target=write))
        self.writes[-1].start()

    def save_done(self) -> bool:
        return not self.writes[-1].is_alive()

    def train_step(self) -> None:
        self.weights["w"] += 1.0
        self.events.append("trained")


def recorder(tmp_path, trainer, state):
    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.controller.step_recorder import StepRecorder

    cfg = config_from_dict({"model": {"kind": "tiny"}, "trainer": {"save_every": 1}})
    logger = SimpleNamespace(log=lambda rec: None)
    return StepRecorder(cfg, trainer, logger, str(tmp_path), run_state=lambda: dict(state))


def test_a_save_overlaps_the_next_train_step_with_the_boundary_snapshot(tmp_path):
    trainer, state = GatedTrainer(), {"step": 1}
    rec = recorder(tmp_path, trainer, state)
    rec.record(1, {}, {"tokens": 1})  # returns with the write still waiting
    assert rec.pending is not None and not rec.pending.done()
    trainer.train_step()  # the next step runs during the write
    state["step"] = 2
    assert step_folders(tmp_path) == []  # not yet in place: only the hidden .step_1.tmp
    trainer.gate.set()
    assert rec.save(1) == str(tmp_path / "step_1")  # waits for it
    assert trainer.events == ["trained", "written"]  # the write finished after the step
    # the step's snapshot, not the state the next step left
    assert (tmp_path / "step_1" / "weights.txt").read_text() == repr({"w": 1.0})
    assert read_run_state(tmp_path / "step_1") == {"step": 1}


def test_the_next_save_waits_for_the_previous_one(tmp_path):
    trainer, state = GatedTrainer(), {"step": 1}
    rec = recorder(tmp_path, trainer, state)
    rec.record(1, {}, {"tokens": 1})
    threading.Timer(0.3, trainer.gate.set).start()
    t0 = time.perf_counter()
    rec.record(2, {}, {"tokens": 1})  # must not start step 2 before step 1 is on disk
    assert time.perf_counter() - t0 >= 0.25
    assert [p.name for p in step_folders(tmp_path)] == ["step_1"]
    rec.wait_saved()
    assert [p.name for p in step_folders(tmp_path)] == ["step_1", "step_2"]


def test_a_rank_snapshot_is_the_step_boundary_state_and_written_in_a_thread(tmp_path, monkeypatch):
    """TrainerRank.start_save holds DeepSpeed's files in memory (through the engine's
    checkpoint engine) and returns before they are written; changes after it are not saved."""
    from rlkit.engines import snapshot
    from rlkit.runtime.actors.trainer_group import TrainerRank
    from tests.unit.runtime.test_checkpoints import FakeEngine

    gate = threading.Event()
    real_write = snapshot.write_held
    monkeypatch.setattr(snapshot, "write_held", lambda files: (gate.wait(10), real_write(files)))
    rank = TrainerRank()
    engine = FakeEngine()
    rank.trainer = SimpleNamespace(export_state=lambda: None, engine=engine, model_path="")
    rank.start_save(str(tmp_path), optimizer=True)
    assert not rank.save_done()
    engine.weight.mul_(3.0)  # the next step changes the live tensor
    gate.set()
    assert rank.save_done(wait=True)
    saved = torch.load(tmp_path / "trainer_state" / "engine0" / "optim_states.pt")
    assert torch.equal(saved["w"], torch.ones(1024))
    assert (tmp_path / "trainer_state" / "engine0" / "rng_rank0.pt").is_file()


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from types import SimpleNamespace
    from rlkit.engines.model_io import load_folder_state, write_hf_files
    from rlkit.runtime.checkpoints import start_checkpoint

    tiny, ck = sys.argv[1], Path(sys.argv[2])
    state = load_folder_state(tiny)
    full = SimpleNamespace(
        start_save=lambda f, optimizer=True: write_hf_files(state, tiny, f), save_done=lambda: True
    )
    start_checkpoint(ck, 1, full, run_state=lambda: {"step": 1}).wait()

    def slow(folder, optimizer=True):
        (Path(folder) / "model.safetensors").write_bytes(b"half a file")

    writes = SimpleNamespace(start_save=slow, save_done=lambda: False)  # never finishes
    start_checkpoint(ck, 2, writes, run_state=lambda: {"step": 2})
    print("writing", flush=True)
    time.sleep(60)
    """
)


def test_a_killed_background_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.engines.model_io import load_folder_state

    tiny = build_tiny_model(tmp_path / "m", hidden_size=64, num_heads=1, intermediate_size=64)
    ck = tmp_path / "checkpoints"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tiny), str(ck)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert (ck / ".step_2.tmp" / "model.safetensors").is_file()  # mid-write
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert [p.name for p in step_folders(ck)] == ["step_1"]
    assert latest_resumable(ck) == ck / "step_1" and read_run_state(ck / "step_1") == {"step": 1}
    loaded = load_folder_state(ck / "step_1")
    want = load_folder_state(tiny)
    assert all(torch.equal(loaded[k], want[k]) for k in want)
