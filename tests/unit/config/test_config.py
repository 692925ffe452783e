"""Recipe validation: every bad key, type or value is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit.config import ConfigError, load_recipe, parse_overrides, to_dict
from rlkit.config.loader import config_from_dict

RECIPES = sorted(Path("recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_validate(recipe):
    cfg = load_recipe(recipe)
    assert cfg.name and cfg.trainer.total_steps > 0


def test_overrides_are_typed_and_nested():
    cfg = load_recipe("recipes/quickstart.yaml", ["trainer.lr=1e-5", "async.alpha=3", "name=x"])
    assert cfg.trainer.lr == 1e-5 and isinstance(cfg.trainer.lr, float)
    assert cfg.async_.alpha == 3 and cfg.name == "x"
    assert parse_overrides(["a.b.c=1", "a.d=[1, 2]"]) == {"a": {"b": {"c": 1}, "d": [1, 2]}}


def test_null_clears_a_mapping_so_a_method_recipe_runs_as_its_baseline():
    from rlkit.runtime.prepare import check_plugins

    over = ["algo.advantage=grpo", "algo.advantage_kw=null", "algo.credit_kw=null"]
    cfg = load_recipe("recipes/vps_cpu.yaml", over)  # the command in the recipe's header
    assert cfg.algo.credit_kw == {} and cfg.algo.advantage_kw == {}
    check_plugins(cfg)  # the checks run before start pass
    kept = load_recipe("recipes/vps_cpu.yaml", ["algo.advantage=grpo", "algo.credit_kw={}"])
    assert "vps_probes" in kept.algo.credit_kw  # `{}` merges into the mapping: nothing cleared


@pytest.mark.parametrize(
    "data, key, expected",
    [
        ({"trainer": {"lrr": 1}}, "trainer.lrr", "unknown key"),
        ({"trainer": {"lr": "fast"}}, "trainer.lr", "expected float"),
        ({"trainer": {"zero_stage": 5}}, "trainer.zero_stage", "expected 0, 1, 2 or 3"),
        ({"algo": {"agg": "mean"}}, "algo.agg", "one of 'token-mean'"),
        ({"async": {"alpha": -1}}, "async.alpha", ">= 0"),
        (
            {
                "rollout": {"prompts_per_step": 3, "samples_per_prompt": 3},
                "trainer": {"world_size": 2},
            },
            "trainer.world_size",
            "divisible",
        ),
        ({"model": {"kind": "path"}}, "model.path", "HF model folder"),
        (
            {"reward": {"fns": [{"fn": "a:b", "weight": "heavy"}]}},
            "reward.fns[0].weight",
            "expected float",
        ),
        ({"bogus": 1}, "bogus", "unknown key"),
    ],
)
def test_errors_name_the_key(data, key, expected):
    data = {"model": {"kind": "tiny"}, **data} if "model" not in data else data
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data)
    msg = str(exc.value)
    assert msg.startswith(f"{key}: ") and expected in msg and "\n" not in msg


def test_missing_recipe_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_recipe("recipes/quickstart.yaml", ["trainer.lr"])


def test_round_trip_through_dict():
    cfg = load_recipe("recipes/quickstart.yaml")
    assert config_from_dict(to_dict(cfg)) == cfg
    assert "async" in to_dict(cfg) and "async_" not in to_dict(cfg)


def test_cli_reports_config_error_before_starting(capsys):
    from rlkit.cli import main

    assert main(["train", "recipes/quickstart.yaml", "trainer.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "trainer.lrr: unknown key" in err and len(err.strip().splitlines()) == 1


def test_missing_model_path_fails_before_anything_is_written(tmp_path, capsys):
    from rlkit.cli import main

    args = [
        "train",
        "recipes/quickstart.yaml",
        "model.kind=path",
        f"model.path={tmp_path / 'nope'}",
        f"logging.runs_dir={tmp_path / 'runs'}",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlkit: config error: model.path:") and "nope" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_missing_dataset_file_is_named(tmp_path, capsys):
    from rlkit.cli import main

    args = [
        "train",
        "recipes/quickstart.yaml",
        "data.kind=file",
        f"data.path={tmp_path / 'rows.jsonl'}",
        f"logging.runs_dir={tmp_path / 'runs'}",
    ]
    assert main(args) == 2
    assert "data.path: file not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_train_cli_takes_overrides_after_resume(tmp_path, monkeypatch):
    """`rlkit train RECIPE --resume DIR key=value` (docs/reliability.md) reaches the run with
    both the resume dir and the override; argparse used to reject the trailing override."""
    import rlkit.runtime.run as run_module
    from rlkit.cli import main

    seen = {}
    monkeypatch.setattr(
        run_module, "train", lambda cfg, resume: seen.update(cfg=cfg, resume=resume)
    )
    rc = main(["train", "recipes/quickstart.yaml", "--resume", str(tmp_path), "trainer.lr=3e-4"])
    assert rc == 0 and seen["resume"] == str(tmp_path) and seen["cfg"].trainer.lr == 3e-4
