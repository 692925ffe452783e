"""ml-100k conversion on a tiny fixture in RecBole's atomic format (no download)."""

from __future__ import annotations

import ast
import csv

import pytest

from rlkit.eval.data import EvalInputError
from rlkit.eval.movielens import convert_ml100k, main


def test_sliding_window_and_chronological_split(ml100k_dir):
    splits, catalogue = convert_ml100k(ml100k_dir)
    assert "99" not in catalogue and catalogue["15"] == "No Year"
    assert catalogue["3"] == "Movie 3 (1993)"
    rows = splits["train"] + splits["valid"] + splits["test"]
    # u1: 13 titled items -> 12 samples; u2: 3 items -> 2 samples
    assert len(rows) == 14
    assert (len(splits["train"]), len(splits["valid"]), len(splits["test"])) == (11, 1, 2)
    times = [r["timestamp"] for r in rows]
    assert times == sorted(times)  # chronological by target time
    assert max(r["timestamp"] for r in splits["train"]) <= min(
        r["timestamp"] for r in splits["test"]
    )
    last_u1 = [r for r in rows if r["user_id"] == "u1"][-1]
    assert last_u1["item_title"] == "Movie 13 (2003)"
    # window of 10, oldest first
    assert last_u1["history_item_title"] == [f"Movie {i} ({1990 + i})" for i in range(3, 13)]
    first_u2 = [r for r in rows if r["user_id"] == "u2"][0]
    assert first_u2["history_item_title"] == ["Movie 14 (2004)"]
    assert first_u2["item_title"] == "No Year"
    assert splits["test"][-1]["item_id"] == "1"  # the latest interaction (t=500)


def test_main_writes_rec_csv_and_items(tmp_path, ml100k_dir):
    out = tmp_path / "out"
    assert main([str(ml100k_dir), str(out)]) == 0
    with (out / "test.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert isinstance(ast.literal_eval(rows[0]["history_item_title"]), list)
    lines = (out / "items.txt").read_text().splitlines()
    assert len(lines) == 15 and all(len(x.split("\t")) == 3 for x in lines)


def test_missing_files_name_the_file(tmp_path):
    with pytest.raises(EvalInputError, match="ml-100k.item"):
        convert_ml100k(tmp_path)
