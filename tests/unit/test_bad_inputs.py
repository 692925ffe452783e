"""Bad inputs, tried systematically (issue 12, point 6): what the user gets for each row of the
table in docs/reliability.md.  Each test feeds one bad input to the code that first meets it."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from rlkit.config.loader import ConfigError, config_from_dict, load_recipe

BASE = {"model": {"kind": "tiny"}}


# ---- recipe ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sections, key, words",
    [
        ({"trainer": {"totl_steps": 3}}, "trainer.totl_steps", "unknown key"),
        ({"trainr": {}}, "trainr", "unknown key"),
        ({"trainer": {"lr": "fast"}}, "trainer.lr", "expected float"),
        ({"trainer": {"total_steps": 2.5}}, "trainer.total_steps", "expected int"),
        ({"trainer": {"lr": -1}}, "trainer.lr", "positive"),
        ({"rollout": {"temperature": -0.5}}, "rollout.temperature", ">= 0"),
        ({"rollout": {"top_p": 1.5}}, "rollout.top_p", "0 < top_p <= 1"),
        ({"rollout": {"engine": "sglang"}}, "rollout.engine", "expected one of"),
        ({"rollout": {"max_worker_restarts": -1}}, "rollout.max_worker_restarts", ">= 0"),
        ({"trainer": {"keep_last": -2}}, "trainer.keep_last", ">= 0"),
        (
            {
                "rollout": {"prompts_per_step": 3, "samples_per_prompt": 3},
                "trainer": {"world_size": 2},
            },
            "trainer.world_size",
            "divisible",
        ),
    ],
)
def test_bad_recipe_values_name_the_key(sections, key, words):
    with pytest.raises(ConfigError) as err:
        config_from_dict({**BASE, **sections})
    assert str(err.value).startswith(key) and words in str(err.value)


def test_bad_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("trainer:\n  lr: [1\n")
    with pytest.raises(ConfigError, match=r"(?s)invalid YAML in .*r\.yaml.*line 2"):
        load_recipe(path)


# ---- data --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from rlkit.data.tiny_model import build_tiny_model

    return build_tiny_model(
        tmp_path_factory.mktemp("bad") / "m", hidden_size=64, num_heads=1, intermediate_size=64
    )


def first_prompt(tiny, path, **rollout):
    from rlkit.runtime import prepare

    cfg = config_from_dict(
        {
            "model": {"kind": "path", "path": str(tiny)},
            "data": {"kind": "file", "path": str(path)},
            "rollout": rollout,
        }
    )
    prepare.check_inputs(cfg)
    return next(prepare.prompt_stream(cfg, str(tiny)))


def test_data_missing_field_names_file_line_and_field(tiny, tmp_path):
    from rlkit.data.arithmetic import DatasetFormatError

    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "1+1", "answer": "2"}\n{"question": "x", "answer": "3"}\n')
    with pytest.raises(DatasetFormatError, match=r"d\.jsonl: line 2 \(row 1\): field 'prompt'"):
        first_prompt(tiny, path)


def test_data_invalid_json_line_names_the_line(tiny, tmp_path):
    from rlkit.data.arithmetic import DatasetFormatError

    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": oops}\n')
    with pytest.raises(DatasetFormatError, match=r"d\.jsonl: line 2 \(row 1\): invalid JSON"):
        first_prompt(tiny, path)


def test_data_empty_file_names_the_file(tiny, tmp_path):
    from rlkit.data.arithmetic import DatasetFormatError

    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(DatasetFormatError, match=r"empty\.jsonl: no rows \(the file is empty\)"):
        first_prompt(tiny, path)


def test_data_non_utf8_line_names_the_file_line_and_byte(tiny, tmp_path):
    from rlkit.data.arithmetic import DatasetFormatError

    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "1+1", "answer": "2"}\n{"prompt": "\xff\xfe", "answer": "3"}\n')
    with pytest.raises(
        DatasetFormatError,
        match=r"d\.jsonl: line 2 \(row 1\): not UTF-8 text \(byte 0xff at column 13\)",
    ):
        first_prompt(tiny, path)


def test_data_one_overlong_row_is_skipped_all_overlong_is_an_error(tiny, tmp_path, capsys):
    long = {"prompt": "1+1=" * 400, "answer": "2"}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(long) + "\n" + json.dumps({"prompt": "2+2", "answer": "4"}) + "\n")
    assert first_prompt(tiny, path).text == "2+2"
    assert "skipping dataset row 0" in capsys.readouterr().err
    path.write_text(json.dumps(long) + "\n")
    with pytest.raises(ValueError, match="every prompt is longer than rollout.max_model_len"):
        first_prompt(tiny, path)


def test_data_missing_file_is_a_config_error(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.path: file not found"):
        first_prompt(tiny, tmp_path / "nope.jsonl")


# ---- model -------------------------------------------------------------------------------
def test_model_missing_path(tmp_path):
    from rlkit.runtime import prepare

    cfg = config_from_dict({"model": {"kind": "path", "path": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match=r"^model\.path: model path not found"):
        prepare.check_inputs(cfg)


def test_model_corrupt_safetensors_names_the_file(tiny, tmp_path):
    from rlkit.engines.model_io import check_model_dir

    bad = shutil.copytree(tiny, tmp_path / "corrupt")
    (bad / "model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ValueError, match=r"corrupt/model\.safetensors: not a readable safetensors"):
        check_model_dir(bad)
    assert check_model_dir(tiny) == tiny  # the intact folder passes


def test_model_tokenizer_of_another_model(tiny, tmp_path):
    from rlkit.engines.model_io import check_model_dir

    bad = shutil.copytree(tiny, tmp_path / "mismatch")
    config = json.loads((bad / "config.json").read_text())
    config["vocab_size"] = 8  # as if the tokenizer came from a model with a larger vocabulary
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="tokenizer does not fit the model"):
        check_model_dir(bad)


# ---- rewards -----------------------------------------------------------------------------
REWARDS = textwrap.dedent(
    """
    import time
    from rlkit.rewards import reward

    def raises(prompt, completion, **kw):
        raise ValueError("boom")

    def hangs(prompt, completion, **kw):
        time.sleep(30)

    def nan(prompt, completion, **kw):
        return float("nan")

    def inf(prompt, completion, **kw):
        return float("inf")

    def string(prompt, completion, **kw):
        return "good"

    @reward(batch=True)
    def wrong_length(prompts, completions, **kw):
        return [1.0]
    """
)


@pytest.mark.parametrize(
    "name, error, counter",
    [
        ("raises", "ValueError: boom", "reward/errors"),
        ("hangs", "exceeded timeout_s=1", "reward/timeouts"),
        ("nan", "not finite: nan", "reward/errors"),
        ("inf", "not finite: inf", "reward/errors"),
        ("string", "must be a number, got str", "reward/errors"),
        ("wrong_length", "returned 1 values for 2 samples", "reward/errors"),
    ],
)
def test_bad_rewards_fall_back_counted(tmp_path, name, error, counter):
    from rlkit.rewards import RewardPool

    (tmp_path / "rw.py").write_text(REWARDS)
    spec = [{"fn": f"{tmp_path}/rw.py:{name}"}]
    with RewardPool(spec, mode="thread", timeout_s=1.0, fallback=-1.0) as pool:
        res = [f.result(timeout=20) for f in pool.submit_many(["p", "p"], ["a", "b"], [{}, {}])]
        metrics = pool.metrics()
    assert [r.score for r in res] == [-1.0, -1.0] and all(r.failed for r in res)
    assert error in res[0].error
    assert metrics[counter] >= 1


# ---- catalogue ---------------------------------------------------------------------------
def test_catalogue_empty_title_names_file_and_line(tmp_path):
    from rlkit.eval.data import load_items
    from rlkit.eval.errors import EvalInputError

    path = tmp_path / "items.txt"
    path.write_text("1\tToy Story\t1\n2\t \t2\n")
    with pytest.raises(EvalInputError, match=r"items\.txt.*2.*title"):
        load_items(path)
    path.write_text("")
    with pytest.raises(EvalInputError, match="no items"):
        load_items(path)


def test_catalogue_duplicate_titles_are_kept(tmp_path):
    """Known behaviour (docs/reliability.md): duplicates load; metrics count a title once."""
    from rlkit.eval.data import load_items

    path = tmp_path / "items.txt"
    path.write_text("1\tToy Story\t1\n2\tToy Story\t2\n")
    assert load_items(path) == ["Toy Story", "Toy Story"]


@pytest.mark.parametrize(
    "algo, key",
    [
        ({"advantage": "grpoo"}, "algo.advantage"),
        ({"policy_loss": "nope.py:f"}, "algo.policy_loss"),
        (
            {"token_hook": "attention_credit", "token_hook_kw": {"strategy": "x"}},
            "algo.token_hook_kw",
        ),
        ({"credit": ["no_such_stage"]}, "algo.credit"),
    ],
)
def test_bad_plugin_names_and_knobs_fail_before_start(algo, key):
    from rlkit.runtime.prepare import check_plugins

    with pytest.raises(ConfigError, match=rf"^{key}: "):
        check_plugins(config_from_dict({"model": {"kind": "tiny"}, "algo": algo}))


def test_bad_strategy_knob_fails_before_start():
    from rlkit.runtime.prepare import check_plugins

    cfg = config_from_dict({"model": {"kind": "tiny"}, "rollout": {"strategy_kw": {"topk": 3}}})
    with pytest.raises(ConfigError, match=r"^rollout\.strategy_kw: .*topk"):
        check_plugins(cfg)
