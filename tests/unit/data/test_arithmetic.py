"""The synthetic arithmetic task and the prompt-dataset loader."""

from __future__ import annotations

import ast
import json
import operator

import pytest

from rlkit.data.arithmetic import (
    DatasetFormatError,
    format_target,
    make_arithmetic_dataset,
    write_jsonl,
)

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _evaluate(expression: str) -> int:
    """Independent check: parse "a<op>b" with Python's own parser and apply the operator."""
    node = ast.parse(expression, mode="eval").body
    assert isinstance(node, ast.BinOp)
    return _BINOPS[type(node.op)](node.left.value, node.right.value)


def test_answers_are_correct():
    rows = make_arithmetic_dataset(300, seed=0, max_operand=50, ops="+-*")
    for row in rows:
        assert row["prompt"].endswith("=")
        assert int(row["answer"]) == _evaluate(row["prompt"][:-1])
    assert {op for r in rows for op in "+-*" if op in r["prompt"]} == {"+", "-", "*"}


def test_deterministic_and_seed_dependent():
    a = make_arithmetic_dataset(50, seed=7, max_operand=30)
    assert a == make_arithmetic_dataset(50, seed=7, max_operand=30)
    assert a != make_arithmetic_dataset(50, seed=8, max_operand=30)


def test_operand_range_and_non_negative_subtraction():
    rows = make_arithmetic_dataset(400, seed=1, min_operand=3, max_operand=9, ops="-")
    for row in rows:
        a, b = (int(x) for x in row["prompt"][:-1].split("-"))
        assert 3 <= a <= 9 and 3 <= b <= 9
        assert int(row["answer"]) >= 0


def test_bad_ops_rejected():
    with pytest.raises(ValueError):
        make_arithmetic_dataset(3, seed=0, ops="/")


def test_format_target():
    assert format_target({"prompt": "12+7=", "answer": "19"}) == "\\boxed{19}"


def test_jsonl_round_trip(tmp_path):
    pytest.importorskip("datasets")
    from rlkit.data.arithmetic import load_prompt_dataset

    rows = make_arithmetic_dataset(20, seed=2)
    path = write_jsonl(rows, tmp_path / "sub" / "train.jsonl")
    assert load_prompt_dataset(path) == rows


def test_parquet_and_int_answers(tmp_path):
    datasets = pytest.importorskip("datasets")
    from rlkit.data.arithmetic import load_prompt_dataset

    path = tmp_path / "p.parquet"
    datasets.Dataset.from_list([{"prompt": "1+2=", "answer": 3}]).to_parquet(str(path))
    assert load_prompt_dataset(path) == [{"prompt": "1+2=", "answer": "3"}]


def test_missing_field_error_names_file_line_row_field(tmp_path):
    pytest.importorskip("datasets")
    from rlkit.data.arithmetic import load_prompt_dataset

    path = tmp_path / "bad.jsonl"
    lines = [
        {"prompt": "1+1=", "answer": "2"},
        {"prompt": "2+2=", "answer": "4"},
        {"prompt": "3+3="},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(DatasetFormatError) as err:
        load_prompt_dataset(path)
    msg = str(err.value)
    assert str(path) in msg and "line 3" in msg and "row 2" in msg and "'answer'" in msg


def test_invalid_json_line_error(tmp_path):
    pytest.importorskip("datasets")
    from rlkit.data.arithmetic import load_prompt_dataset

    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2=", "answer": \n')
    with pytest.raises(DatasetFormatError) as err:
        load_prompt_dataset(path)
    assert str(path) in str(err.value) and "line 2" in str(err.value)


def test_custom_fields_checked(tmp_path):
    pytest.importorskip("datasets")
    from rlkit.data.arithmetic import load_prompt_dataset

    path = write_jsonl([{"prompt": "x", "answer": "1"}], tmp_path / "a.jsonl")
    with pytest.raises(DatasetFormatError, match="'history'"):
        load_prompt_dataset(path, fields=("prompt", "history"))


def test_with_sft_targets_mixes_formats_at_the_given_rate():
    from rlkit.data.arithmetic import sft_target, with_sft_targets

    rows = make_arithmetic_dataset(2000, seed=0)
    mixed = with_sft_targets(rows, unboxed_rate=0.7, seed=4)
    assert mixed == with_sft_targets(rows, unboxed_rate=0.7, seed=4)
    bare = [m for m in mixed if m["target"] == m["answer"]]
    boxed = [m for m in mixed if m["target"] == format_target(m)]
    assert len(bare) + len(boxed) == len(rows)
    assert 0.65 < len(bare) / len(rows) < 0.75
    assert all(sft_target(m) == m["target"] for m in mixed)
    assert sft_target(rows[0]) == format_target(rows[0])  # no "target": boxed
    assert "target" not in rows[0]  # inputs untouched
