"""A resume that loses nothing at alpha > 0 (issue 23, item 1), on the real stack.

alpha = 2 with long-tailed response lengths (rows with `max_tokens`, Pareto and 200), a checkpoint
every step, 6 steps: a trainer rank is SIGKILLed after step 3; the run is resumed from the first
checkpoint that holds groups both in the buffer and in flight (the later ones are removed).
Checked: `resume/groups_lost` = 0 and every restored group is counted; buffered groups are
trained with the very tokens they had at the checkpoint (not generated again); every group live
at the checkpoint ends trained, aborted / dropped as too stale, or is still live at the end; the
accounting identity holds across the two processes (the final checkpoint's counts add up to the
groups admitted); and no group id is trained twice over the whole run (the rollout dumps of
every step)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict
from tests.integration.conftest import tiny_recipe
from tests.integration.test_resume import kill_a_trainer_rank_after, rows

pytestmark = pytest.mark.slow

STEPS = 6


def long_tail_data(path: Path, n: int = 96) -> str:
    """Prompts whose responses have exactly `max_tokens` tokens (EOS ignored): a Pareto draw
    (most short, a few long) and every third prompt at 200 tokens, so that groups are still
    generating at every step boundary (a trainer step of the tiny model takes ~0.2 s)."""
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(n):
            budget = 200 if i % 3 == 0 else min(160, int(4 * rng.paretovariate(1.1)))
            f.write(json.dumps({"prompt": f"{i % 9}+{i % 7}=", "max_tokens": budget}) + "\n")
    return str(path)


def recipe(tmp_path, tiny_model) -> dict:
    r = tiny_recipe(
        tmp_path,
        name="queue",
        data={"kind": "file", "path": long_tail_data(tmp_path / "tail.jsonl")},
        rollout={"dump": True},
        trainer={"total_steps": STEPS, "save_every": 1, "keep_last": 0},
        **{"async": {"mode": "async", "alpha": 2}},
    )
    r["model"]["path"] = tiny_model
    return r


def live_kinds(checkpoint: Path) -> tuple[bool, bool]:
    """Whether the checkpoint's queue holds buffered groups, and running ones."""
    from rlkit.runtime.checkpoints import read_run_state

    q = read_run_state(checkpoint)["queue"]
    return bool(q["buffer"]), bool(q["running"])


def trained_by_step(run_dir: Path) -> dict[int, dict[int, dict[int, list[int]]]]:
    """step -> group id -> sample index -> response token ids, from the rollout dumps."""
    out: dict = {}
    for f in sorted((run_dir / "rollouts").glob("step_*.jsonl")):
        step = int(f.stem.split("_")[1])
        for line in f.read_text().splitlines():
            row = json.loads(line)
            resp = row["token_ids"][row["prompt_len"] :]
            out.setdefault(step, {}).setdefault(row["group_id"], {})[row["sample"]] = resp
    return out


def test_a_resume_at_alpha_2_keeps_every_group(
    tmp_path, tiny_model, ray_cluster, vllm_worker, monkeypatch
):
    from rlkit.runtime.checkpoints import latest_resumable, read_run_state, step_folders, step_of
    from rlkit.runtime.run import RankGroupLost, train

    quiet = {"log": lambda *_: None, "workers": [vllm_worker]}
    cfg = recipe(tmp_path, tiny_model)
    run_dir = tmp_path / "runs" / "queue"
    kill_a_trainer_rank_after(monkeypatch, run_dir / "metrics.jsonl", 3)
    with pytest.raises(RankGroupLost):
        train(config_from_dict(cfg), **quiet)
    monkeypatch.undo()

    # the checkpoint to resume from: the first holding groups both buffered and in flight (how
    # many of each is a matter of timing); the later ones are removed
    both = [c for c in step_folders(run_dir / "checkpoints") if live_kinds(c) == (True, True)]
    assert both, [live_kinds(c) for c in step_folders(run_dir / "checkpoints")]
    ckpt = both[0]
    for later in step_folders(run_dir / "checkpoints"):
        if step_of(later) > step_of(ckpt):
            shutil.rmtree(later)
    assert latest_resumable(run_dir / "checkpoints") == ckpt
    at, state = step_of(ckpt), read_run_state(ckpt)
    q = state["queue"]
    buffered = {g["group_id"]: g for g in q["buffer"]}
    running = {g["group_id"]: g for g in q["running"]}

    train(config_from_dict(cfg), resume=str(run_dir), **quiet)
    recs = rows(run_dir)
    assert [r["step"] for r in recs] == list(range(1, STEPS + 1))
    first = recs[at]  # the first record after the resume
    assert first["resume/groups_lost"] == 0
    assert first["resume/restored_buffered"] == len(buffered)
    assert first["resume/restored_running"] == len(running)
    assert first["resume/regenerated_requests"] >= 1
    assert recs[-1]["rollout/accounting_ok"] == 1.0

    # no group id trained twice over the whole run (steps before and after the resume)
    by_step = trained_by_step(run_dir)
    assert sorted(by_step) == list(range(1, STEPS + 1))
    ids = [gid for s in by_step.values() for gid in s]
    assert len(ids) == len(set(ids)) == 4 * STEPS
    after = {
        gid: samples for s, groups in by_step.items() if s > at for gid, samples in groups.items()
    }

    # buffered groups are trained with the tokens they had at the checkpoint
    for gid in set(buffered) & set(after):
        saved = {s["index"]: s["completion"]["token_ids"] for s in buffered[gid]["samples"]}
        assert after[gid] == saved, gid

    # the accounting identity across the two processes, from the final checkpoint
    final = read_run_state(run_dir / "checkpoints" / f"step_{STEPS}")
    ro, st, fq = final["rollout"], final["rollout"]["staleness"], final["queue"]
    live_end = {g["group_id"] for g in fq["buffer"] + fq["running"]}
    ended = st["consumed"] + st["aborted"] + st["dropped"] + st["filtered"]  # failed: in filtered
    assert ro["next_group_id"] == ended + len(live_end)
    assert set(fq["trained_ids"]) == set(ids) and st["consumed"] == len(ids)
    assert ro["trained_twice"] == 0

    # every group live at the checkpoint: trained after it, too stale (counted), or still live
    before = state["rollout"]["staleness"]
    stale = st["aborted"] + st["dropped"] - before["aborted"] - before["dropped"]
    unaccounted = (set(buffered) | set(running)) - set(after) - live_end
    assert len(unaccounted) <= stale, (unaccounted, stale)
