"""Fixtures for the evaluation tests: tiny data files and (once per session) a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CATALOGUE = ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta"]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def gsm8k_file(tmp_path: Path) -> Path:
    """Three GSM8K-format rows: golds 1234, 7 and 10 (after '#### ')."""
    return write_jsonl(
        tmp_path / "gsm8k.jsonl",
        [
            {"question": "What is 1000+234?", "answer": "1000+234=1234\n#### 1,234"},
            {"question": "What is 3+4?", "answer": "3+4=7\n#### 7"},
            {"question": "What is 5+5?", "answer": "#### 10"},
        ],
    )


@pytest.fixture
def rec_files(tmp_path: Path) -> tuple[Path, Path]:
    """A rec CSV (5 rows, targets Beta, Gamma, Alpha, Zeta, Delta) and its items file."""
    csv_path = tmp_path / "test.csv"
    rows = [
        ("u1", ["Alpha"], "Beta"),
        ("u2", ["Alpha", "Beta"], "Gamma"),
        ("u3", ["Gamma", "Delta"], "Alpha"),
        ("u4", ["Beta"], "Zeta"),
        ("u5", ["Epsilon", "Alpha"], "Delta"),
    ]
    lines = ["user_id,history_item_title,item_title"]
    lines += [f'{u},"{h!r}",{t}' for u, h, t in rows]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = tmp_path / "items.txt"
    items.write_text(
        "".join(f"<a_{i}><b_{i}>\t{t}\t{i}\n" for i, t in enumerate(CATALOGUE)), encoding="utf-8"
    )
    return csv_path, items


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A random-init tiny Qwen2 (hidden 128, 2 heads, 2 layers) + char tokenizer, saved once."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from rlkit.data.tiny_model import build_tiny_model

    return build_tiny_model(
        tmp_path_factory.mktemp("tiny_eval_ckpt"), max_position_embeddings=1024, seed=0
    )


def _write_atomic(d: Path) -> Path:
    """2 users; u1 has 13 interactions (one item untitled), u2 has 3; timestamps interleave."""
    d.mkdir(parents=True, exist_ok=True)
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [f"{i}\tMovie {i}\t{1990 + i}\tDrama" for i in range(1, 15)]
    items.append("15\tNo Year\t\tComedy")
    (d / "ml-100k.item").write_text("\n".join(items) + "\n")
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    # u1: items 1..13 at t = 100, 110, ... written out of order; item 99 has no title
    u1 = [(i, 100 + 10 * (i - 1)) for i in range(1, 14)]
    for i, t in reversed(u1):
        inter.append(f"u1\t{i}\t4\t{t}")
    inter.append("u1\t99\t5\t105")
    # u2: items 14, 15, 1 at t = 95, 135, 500
    inter += ["u2\t14\t3\t95", "u2\t15\t3\t135", "u2\t1\t3\t500"]
    (d / "ml-100k.inter").write_text("\n".join(inter) + "\n")
    return d


@pytest.fixture
def ml100k_dir(tmp_path: Path) -> Path:
    """A directory with tiny `ml-100k.inter` / `ml-100k.item` files (RecBole atomic format)."""
    return _write_atomic(tmp_path / "ml")


@pytest.fixture
def jsonl():
    """The `write_jsonl(path, records)` helper."""
    return write_jsonl
