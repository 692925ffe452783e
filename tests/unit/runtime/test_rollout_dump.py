"""Rollout dumps (`rollout.dump`): the rows of a credit batch (lengths, masks, advantages,
rewards, versions, estimator inputs), the atomic writer, the training thread handing the rows
over and the step recorder writing them as `rollouts/step_N.jsonl`."""

from __future__ import annotations

import json

import pytest

from rlkit.config.loader import config_from_dict
from rlkit.credit import Services, build_pipeline
from rlkit.engines.rollout_protocol import Completion
from rlkit.runtime.controller.groups import Group, Prompt, Sample
from rlkit.runtime.controller.rollout_dump import DUMP_KEY, batch_rows, dump_text, write_dump


def _groups() -> list[Group]:
    """Group 1: a multi-turn sample (model 2, environment 2, model 1 tokens) and a plain one;
    group 0: two plain samples, one generated under version 3."""
    g1 = Group(1, Prompt(7, "what is 2+2?", [1, 2, 3], {"answer": "4"}), 2, 4, 0)
    multi = Completion(
        [5, 6, 40, 41, 7], [-0.5, -0.6, 0.0, 0.0, -0.7], "ab=4c", "stop", [1, 1, 0, 0, 1], 2
    )
    g1.samples[0] = Sample(0, multi, 4, reward=1.0, components={"acc": 1.0})
    g1.samples[1] = Sample(1, Completion([8, 9], [-1.0, -2.0], "de"), 4, reward=0.0)
    g0 = Group(0, Prompt(3, "1+1?", [4], {}), 2, 3, 0)
    g0.samples[0] = Sample(0, Completion([5], [-0.1], "x", "length"), 3, reward=0.5)
    g0.samples[1] = Sample(1, Completion([6, 7], [-0.2, -0.3], "yz"), 3, reward=0.0)
    return [g1, g0]


def _batch():
    cfg = config_from_dict({"model": {"kind": "tiny"}, "algo": {"advantage": "grpo"}})
    return build_pipeline(cfg, Services())(_groups())


def test_rows_hold_tokens_masks_advantages_and_rewards_as_trained():
    batch = _batch()
    rows = batch_rows(batch)
    assert [(r["group_id"], r["sample"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    multi = rows[2]
    assert multi["token_ids"] == [1, 2, 3, 5, 6, 40, 41, 7]
    assert multi["loss_mask"] == [0, 0, 0, 1, 1, 0, 0, 1]
    assert (multi["turns"], multi["version"], multi["prompt_len"]) == (2, 4, 3)
    assert (multi["reward"], multi["components"], multi["prompt_index"]) == (1.0, {"acc": 1.0}, 7)
    adv = batch.samples[2].streams["advantages"]  # GRPO: one value per sample
    assert adv > 0 and multi["advantages"] == [0, 0, 0, adv, adv, 0, 0, adv]
    assert multi["logprobs"] == [0, 0, 0, -0.5, -0.6, 0, 0, -0.7]
    assert (multi["text"], multi["prompt_text"]) == ("ab=4c", "what is 2+2?")
    for r in rows:
        n = len(r["token_ids"])
        assert len(r["loss_mask"]) == len(r["advantages"]) == len(r["logprobs"]) == n
        assert sum(r["loss_mask"]) == batch.samples[rows.index(r)].num_trained
    assert rows[0]["finish_reason"] == "length" and rows[0]["version"] == 3
    mean = sum(r["reward"] for r in rows) / len(rows)
    assert mean == pytest.approx(batch.stats["reward/mean"])


def test_rows_carry_other_streams_and_the_estimators_per_sample_inputs():
    batch = _batch()
    batch.set_stream("adv_mask", batch.mask.float())
    batch.estimator_kw.update(beliefs=[None, [0.1, 0.4], [0.2, 0.3], None], lam=0.5)
    rows = [json.loads(line) for line in dump_text(batch).splitlines()]
    assert rows[2]["streams"]["adv_mask"] == [0, 0, 0, 1, 1, 0, 0, 1]
    assert [r["estimator_inputs"] for r in rows] == [
        {"beliefs": None},
        {"beliefs": [0.1, 0.4]},
        {"beliefs": [0.2, 0.3]},
        {"beliefs": None},
    ]  # a scalar knob (lam) is not per sample: left out


def test_write_dump_is_atomic_and_replaces_a_previous_file(tmp_path):
    out = write_dump(tmp_path / "rollouts", 3, '{"a": 1}\n')
    assert out == tmp_path / "rollouts" / "step_3.jsonl" and out.read_text() == '{"a": 1}\n'
    write_dump(tmp_path / "rollouts", 3, '{"a": 2}\n')  # a resumed run redoes step 3
    assert out.read_text() == '{"a": 2}\n'
    with pytest.raises(TypeError):
        write_dump(tmp_path / "rollouts", 3, None)  # fails while writing
    assert out.read_text() == '{"a": 2}\n'  # the old file intact
    assert sorted(p.name for p in (tmp_path / "rollouts").iterdir()) == ["step_3.jsonl"]


class _Trainer:
    def train_step_async(self, samples):
        return [{"loss": 0.5}]


def test_dispatch_hands_the_rows_over_and_the_recorder_writes_them(tmp_path, monkeypatch):
    import ray

    from rlkit.runtime.controller.metrics_logger import MetricsLogger, read_metrics
    from rlkit.runtime.controller.step_recorder import StepRecorder
    from rlkit.runtime.controller.trainer_dispatch import TrainerDispatch

    monkeypatch.setattr(ray, "get", lambda refs: refs)  # the fake trainer's "refs" are results
    cfg = config_from_dict({"model": {"kind": "tiny"}, "rollout": {"dump": True}})
    pipeline = build_pipeline(cfg, Services())
    off = TrainerDispatch(pipeline, _Trainer())
    assert DUMP_KEY not in off.submit(_groups(), {}).result()
    dispatch = TrainerDispatch(pipeline, _Trainer(), dump=cfg.rollout.dump)
    metrics = dispatch.submit(_groups(), {}).result()
    dispatch.close()
    off.close()
    logger = MetricsLogger(tmp_path, tensorboard=False, console=False)
    rec = StepRecorder(cfg, None, logger, None)
    rec.record(5, metrics, {"tokens": 12})
    logger.close()
    rows = [
        json.loads(x) for x in (tmp_path / "rollouts" / "step_5.jsonl").read_text().split("\n") if x
    ]
    assert len(rows) == 4 and rows[2]["loss_mask"] == [0, 0, 0, 1, 1, 0, 0, 1]
    (logged,) = read_metrics(tmp_path)
    assert DUMP_KEY not in logged and logged["time/dump_s"] >= 0
    assert logged["reward/mean"] == pytest.approx(sum(r["reward"] for r in rows) / 4)
