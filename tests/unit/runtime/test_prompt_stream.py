"""The prompt stream skips (and names, once) rows too long for the engine instead of failing."""

from __future__ import annotations

import itertools
import json

import pytest

from rlkit.config.loader import config_from_dict


def test_over_long_rows_are_skipped_and_named(tmp_path, capsys):
    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.runtime.prepare import prompt_stream

    model = build_tiny_model(tmp_path / "m", seed=0)
    rows = [
        {"prompt": "1+1=", "answer": "2"},
        {"prompt": "9" * 200, "answer": "0"},
        {"prompt": "2+2=", "answer": "4"},
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config_from_dict(
        {
            "model": {"kind": "path", "path": str(model)},
            "data": {"kind": "file", "path": str(data)},
            "rollout": {"max_model_len": 64, "max_tokens": 16},
        }
    )
    got = list(itertools.islice(prompt_stream(cfg, str(model)), 6))
    assert {p.text for p in got} == {"1+1=", "2+2="}
    err = capsys.readouterr().err
    assert err.count("skipping dataset row 1") == 1  # named once, not per epoch


def test_all_rows_too_long_is_an_error(tmp_path):
    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.runtime.prepare import prompt_stream

    model = build_tiny_model(tmp_path / "m", seed=0)
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"prompt": "9" * 200, "answer": "0"}) + "\n")
    cfg = config_from_dict(
        {
            "model": {"kind": "path", "path": str(model)},
            "data": {"kind": "file", "path": str(data)},
            "rollout": {"max_model_len": 64, "max_tokens": 16},
        }
    )
    with pytest.raises(ValueError, match="longer than rollout.max_model_len"):
        next(prompt_stream(cfg, str(model)))
