"""MovieLens-100K from RecBole atomic files -> next-item rec samples (sliding window, 8:1:1).

Input: a directory holding `ml-100k.inter` and `ml-100k.item` in RecBole's atomic format
(tab-separated, header `name:type`; e.g. `user_id:token item_id:token rating:float
timestamp:float` and `item_id:token movie_title:token_seq release_year:token class:token_seq`).
They ship in the PyPI `recbole==1.2.1` wheel under `recbole/dataset_example/ml-100k/`; GroupLens
terms forbid redistributing them, so fetch them at set-up time, never commit them.

Conversion (the D3/BIGRec/MiniOneRec/ReRe conventions, docs/algorithms.md §6):
1. every interaction is kept (implicit feedback, no rating threshold); items with no title row
   are dropped; title = `movie_title (release_year)` (`movie_title` when the year is empty);
2. per user, interactions sorted by (timestamp, file order); for each position i >= 1 one sample:
   history = the previous min(i, window=10) items (oldest first), target = item i;
3. all samples sorted by (target timestamp, user order, position) and split chronologically:
   the first floor(0.8 n) train, the next floor(0.1 n) valid, the rest test.

Run `python -m rlkit.eval.movielens DATA_DIR OUT_DIR` to write train/valid/test CSVs (the `rec`
suite's columns) and `items.txt` (`sid<TAB>title<TAB>id`, sid = the item id).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

from rlkit.eval.data import EvalInputError


def read_atomic(path: Path) -> list[dict[str, str]]:
    """Rows of a RecBole atomic file as {field name (type stripped): value}."""
    if not path.is_file():
        raise EvalInputError(f"{path}: file not found (expected a RecBole atomic file)")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines:
        raise EvalInputError(f"{path}:1: empty file, expected a 'name:type' header")
    names = [h.split(":", 1)[0] for h in lines[0].split("\t")]
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        vals = line.split("\t")
        if len(vals) != len(names):
            raise EvalInputError(f"{path}:{i}: {len(vals)} columns, header has {len(names)}")
        rows.append(dict(zip(names, vals, strict=True)))
    return rows


def item_titles(item_rows: list[dict[str, str]], path: Path) -> dict[str, str]:
    """item_id -> 'movie_title (release_year)'."""
    out = {}
    for i, r in enumerate(item_rows, start=2):
        if "item_id" not in r or "movie_title" not in r:
            raise EvalInputError(f"{path}:{i}: field 'item_id'/'movie_title' missing")
        year = r.get("release_year", "").strip()
        title = r["movie_title"].strip()
        out[r["item_id"]] = f"{title} ({year})" if year else title
    return out


def user_sequences(inter_rows: list[dict[str, str]], path: Path) -> dict[str, list[tuple]]:
    """user_id -> [(timestamp, file order, item_id)] sorted chronologically."""
    seqs: dict[str, list[tuple]] = {}
    for i, r in enumerate(inter_rows):
        for f in ("user_id", "item_id", "timestamp"):
            if f not in r:
                raise EvalInputError(f"{path}:{i + 2}: field {f!r} missing")
        try:
            ts = float(r["timestamp"])
        except ValueError:
            raise EvalInputError(f"{path}:{i + 2}: field 'timestamp' not a number") from None
        seqs.setdefault(r["user_id"], []).append((ts, i, r["item_id"]))
    for s in seqs.values():
        s.sort()
    return seqs


def sliding_window_samples(
    seqs: dict[str, list[tuple]], titles: dict[str, str], window: int = 10
) -> list[dict[str, Any]]:
    """One sample per (user, position >= 1): the previous <= `window` items predict the next."""
    samples = []
    for u_order, (user, seq) in enumerate(seqs.items()):
        seq = [x for x in seq if x[2] in titles]
        for i in range(1, len(seq)):
            hist = seq[max(0, i - window) : i]
            ts, _, item = seq[i]
            samples.append(
                {
                    "user_id": user,
                    "history_item_title": [titles[h[2]] for h in hist],
                    "item_title": titles[item],
                    "history_item_id": [h[2] for h in hist],
                    "item_id": item,
                    "timestamp": ts,
                    "_order": (ts, u_order, i),
                }
            )
    samples.sort(key=lambda s: s["_order"])
    for s in samples:
        del s["_order"]
    return samples


def chrono_split(samples: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """8:1:1 by time: floor(0.8n) train, floor(0.1n) valid, the rest test (input is sorted)."""
    n = len(samples)
    n_train, n_valid = int(0.8 * n), int(0.1 * n)
    return {
        "train": samples[:n_train],
        "valid": samples[n_train : n_train + n_valid],
        "test": samples[n_train + n_valid :],
    }


def convert_ml100k(data_dir: str | Path, window: int = 10) -> tuple[dict[str, list], dict]:
    """(splits, item_id -> title) from `ml-100k.inter` / `ml-100k.item` in `data_dir`.

    The catalogue is every titled item that occurs in an interaction.
    """
    d = Path(data_dir)
    inter_path, item_path = d / "ml-100k.inter", d / "ml-100k.item"
    titles = item_titles(read_atomic(item_path), item_path)
    seqs = user_sequences(read_atomic(inter_path), inter_path)
    splits = chrono_split(sliding_window_samples(seqs, titles, window))
    used = {x[2] for s in seqs.values() for x in s if x[2] in titles}
    catalogue = {k: v for k, v in titles.items() if k in used}
    return splits, catalogue


def write_split_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """The `rec` suite's CSV: lists as Python literals (read back with ast.literal_eval)."""
    cols = ["user_id", "history_item_title", "item_title", "history_item_id", "item_id"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([repr(r[c]) if isinstance(r[c], list) else r[c] for c in cols])


def write_items(catalogue: dict[str, str], path: Path) -> None:
    """`sid<TAB>title<TAB>id` per item (sid = the item id; titles have no tabs)."""
    with path.open("w", encoding="utf-8") as f:
        for item_id, title in catalogue.items():
            f.write(f"{item_id}\t{title.replace(chr(9), ' ')}\t{item_id}\n")


def main(argv: list[str] | None = None) -> int:
    """`python -m rlkit.eval.movielens DATA_DIR OUT_DIR`: write the converted files."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m rlkit.eval.movielens DATA_DIR OUT_DIR", file=sys.stderr)
        return 2
    splits, catalogue = convert_ml100k(args[0])
    out = Path(args[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        write_split_csv(rows, out / f"{name}.csv")
    write_items(catalogue, out / "items.txt")
    print({k: len(v) for k, v in splits.items()}, f"{len(catalogue)} items -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
