"""Loading evaluation data into canonical rows, with one clear error per bad input.

Every problem raises `EvalInputError` naming the file, the line (1-based, as editors show it;
for CSV the header is line 1) and the field, so a user can fix the file without a traceback.

Row ids: a row's own `id` field when present, else its 0-based record index (for JSONL the
0-based index among non-blank lines, for CSV the 0-based data row, for parquet the row number).
Ids are compared as strings (a prediction `{"id": 3}` matches row id "3").
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path
from typing import Any

from rlkit.eval.errors import EvalInputError
from rlkit.eval.suites import SuiteSpec

__all__ = [
    "EvalInputError",
    "read_records",
    "load_math_rows",
    "load_rec_rows",
    "load_items",
    "load_predictions",
    "parse_history",
    "canonical_math_rows",
]


def _where(path: str | Path, line: int | None = None, field: str | None = None) -> str:
    """'FILE:LINE: field X:' prefix of an error message."""
    loc = str(path) if line is None else f"{path}:{line}"
    return f"{loc}: field {field!r}:" if field else f"{loc}:"


def read_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs from a .jsonl/.json-lines, .parquet or .csv file."""
    p = Path(path)
    if not p.is_file():
        raise EvalInputError(f"{p}: file not found (or not a regular file)")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(p)
    if suffix in (".csv", ".tsv"):
        return _read_csv(p, "\t" if suffix == ".tsv" else ",")
    return _read_jsonl(p)


def _read_jsonl(p: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EvalInputError(f"{p}: cannot read ({e})") from None
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalInputError(f"{p}:{i}: invalid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise EvalInputError(f"{p}:{i}: expected a JSON object, got {type(rec).__name__}")
        out.append((i, rec))
    return out


def _read_csv(p: Path, delimiter: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            return [(reader.line_num, dict(row)) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise EvalInputError(f"{p}: cannot read CSV ({e})") from None


def _read_parquet(p: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(p).to_pylist()
    except ImportError:
        raise EvalInputError(f"{p}: reading parquet needs pyarrow (pip install pyarrow)") from None
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise EvalInputError(f"{p}: cannot read parquet ({e})") from None
    return [(i + 1, r) for i, r in enumerate(rows)]


def _pick(rec: dict[str, Any], aliases: tuple[str, ...]) -> Any:
    """The value of the first alias present (and not None) in `rec`, else None."""
    for a in aliases:
        if rec.get(a) is not None:
            return rec[a]
    return None


def canonical_math_rows(
    records: list[tuple[int, dict[str, Any]]], spec: SuiteSpec, source: str
) -> list[dict[str, Any]]:
    """Rows {id, question, gold, level?} of a math suite; errors name the missing field."""
    from rlkit.eval.grading import gsm8k_gold

    qf = spec.question_field
    rows = []
    for idx, (line, rec) in enumerate(records):
        q = _pick(rec, spec.field_map.get(qf, (qf,)))
        a = _pick(rec, spec.field_map.get("answer", ("answer",)))
        if not isinstance(q, str) or not q.strip():
            raise EvalInputError(f"{_where(source, line, qf)} missing or not a non-empty string")
        if a is None:
            raise EvalInputError(f"{_where(source, line, 'answer')} missing")
        if isinstance(a, (list, tuple)):  # some hub copies store a list of accepted answers
            a = a[0] if a else ""
        gold = gsm8k_gold(str(a)) if spec.gsm8k_gold else str(a).strip()
        if gold is None:
            raise EvalInputError(f"{_where(source, line, 'answer')} has no '#### <answer>' line")
        rid = _pick(rec, spec.field_map.get("id", ("id",)))
        row = {"id": str(idx if rid is None else rid), "question": q, "gold": gold}
        level = _pick(rec, spec.field_map.get("level", ("level",)))
        if level is not None:
            row["level"] = str(level)
        rows.append(row)
    return rows


def load_math_rows(spec: SuiteSpec, data: str | Path | None) -> list[dict[str, Any]]:
    """Canonical rows from a local file, or from the hub when `data` is None."""
    if data is not None:
        return canonical_math_rows(read_records(data), spec, str(data))
    try:
        from datasets import load_dataset
    except ImportError:
        raise EvalInputError("--data not given and the `datasets` package is missing") from None
    ds = load_dataset(spec.hub_id, spec.hub_config, split=spec.hub_split)
    src = f"hf://{spec.hub_id}[{spec.hub_split}]"
    return canonical_math_rows([(i, dict(r)) for i, r in enumerate(ds)], spec, src)


def parse_history(value: Any, source: str, line: int, field: str) -> list[str]:
    """A Python-literal list of titles (e.g. "['A', 'B']"), parsed with ast.literal_eval."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        try:
            items = ast.literal_eval(str(value))
        except (ValueError, SyntaxError):
            raise EvalInputError(
                f"{_where(source, line, field)} not a Python list literal"
            ) from None
    if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
        raise EvalInputError(f"{_where(source, line, field)} must be a list of title strings")
    return [t.strip() for t in items]


def load_rec_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows {id, user_id, history, target} of a rec CSV (or JSONL/parquet with the same fields)."""
    rows = []
    for idx, (line, rec) in enumerate(read_records(path)):
        for f in ("history_item_title", "item_title"):
            if rec.get(f) in (None, ""):
                raise EvalInputError(f"{_where(path, line, f)} missing or empty")
        history = parse_history(rec["history_item_title"], str(path), line, "history_item_title")
        rid = rec.get("id")
        rows.append(
            {
                "id": str(idx if rid in (None, "") else rid),
                "user_id": str(rec.get("user_id", "")),
                "history": history,
                "target": str(rec["item_title"]).strip(),
            }
        )
    return rows


def load_items(path: str | Path) -> list[str]:
    """Catalogue titles from a `sid<TAB>title<TAB>id` file (one item per line, no header)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise EvalInputError(f"{p}: cannot read items file ({e})") from None
    titles = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[1].strip():
            raise EvalInputError(f"{_where(p, i, 'title')} expected 'sid<TAB>title<TAB>id'")
        titles.append(parts[1].strip())
    if not titles:
        raise EvalInputError(f"{p}: no items")
    return titles


def load_predictions(
    path: str | Path, kind: str, known_ids: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """Predictions per row id from JSONL; each line is one sample (math) or one ranking (rec).

    Math lines: {"id", "completion": str, "greedy"?: bool, "finish_reason"?: str}; several lines
    per id are several samples. Rec lines: {"id", "items": [title, ...]} ranked best first.
    An id that is not in the data is an error (it usually means the wrong data file).
    """
    field = "completion" if kind == "math" else "items"
    out: dict[str, list[dict[str, Any]]] = {}
    for line, rec in _read_jsonl_checked(path):
        if "id" not in rec:
            raise EvalInputError(f"{_where(path, line, 'id')} missing")
        rid = str(rec["id"])
        if rid not in known_ids:
            raise EvalInputError(f"{_where(path, line, 'id')} {rid!r} is not a row id of the data")
        val = rec.get(field)
        ok = isinstance(val, str) if kind == "math" else _is_title_list(val)
        if not ok:
            want = "a string" if kind == "math" else "a list of title strings"
            raise EvalInputError(f"{_where(path, line, field)} missing or not {want}")
        out.setdefault(rid, []).append(rec)
    return out


def _read_jsonl_checked(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    p = Path(path)
    if not p.is_file():
        raise EvalInputError(f"{p}: file not found (or not a regular file)")
    return _read_jsonl(p)


def _is_title_list(val: Any) -> bool:
    return isinstance(val, list) and all(isinstance(t, str) or t is None for t in val)
