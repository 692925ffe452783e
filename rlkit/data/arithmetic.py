"""The quickstart's synthetic task (integer arithmetic answered in `\\boxed{}`) and prompt loading.

Why synthetic: the quickstart must show GRPO raising the reward on 2 CPU cores in minutes, with
no hub access, on a task whose answers are checkable exactly. Rows are dicts with a `prompt`
("12+7=") and an `answer` ("19", a string integer); the reward is exact match of the last
`\\boxed{...}` content with the answer (rlkit's math reward convention, algorithms.md section 7).

`load_prompt_dataset` is the one loader of prompt datasets: local JSONL/JSON/parquet files (what
tests and the demo use) and hub dataset names (`datasets.load_dataset(name)`, for real users),
with one clear error naming the file, row and field of a malformed row.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class DatasetFormatError(ValueError):
    """A prompt dataset row lacks a required field (or a file cannot be parsed)."""


def make_arithmetic_dataset(
    n: int,
    *,
    seed: int,
    max_operand: int = 20,
    min_operand: int = 0,
    ops: str = "+-",
    allow_negative: bool = False,
) -> list[dict[str, str]]:
    """`n` rows {"prompt": "a<op>b=", "answer": str(result)}, deterministic given the arguments.

    Operands are uniform in [min_operand, max_operand]; the operator is uniform over `ops`
    (any of "+-*"). With allow_negative False, "a-b" is written with a >= b so that every answer
    is a non-negative integer (no "-" sign inside the box).
    """
    bad = sorted(set(ops) - set(_OPS))
    if bad or not ops:
        raise ValueError(f"ops must be a non-empty subset of '+-*', got {ops!r}")
    if min_operand > max_operand:
        raise ValueError(f"min_operand {min_operand} > max_operand {max_operand}")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        op = rng.choice(ops)
        a = rng.randint(min_operand, max_operand)
        b = rng.randint(min_operand, max_operand)
        if op == "-" and not allow_negative and a < b:
            a, b = b, a
        rows.append({"prompt": f"{a}{op}{b}=", "answer": str(_OPS[op](a, b))})
    return rows


def format_target(row: dict[str, Any]) -> str:
    """The SFT completion of a row: "\\boxed{<answer>}" (the tokenizer's EOS is added by SFT)."""
    return "\\boxed{" + str(row["answer"]) + "}"


def with_sft_targets(
    rows: Sequence[dict[str, Any]], *, unboxed_rate: float, seed: int
) -> list[dict[str, Any]]:
    """Copies of rows with a "target" field: the bare answer ("19") with probability
    `unboxed_rate`, else format_target(row) ("\\boxed{19}"); deterministic given `seed`.

    Why: the quickstart's warm start imitates demonstrations that use the required `\\boxed{}`
    format only part of the time, like a base model that often answers in its own format. The
    reward counts only boxed answers, so the SFT policy's reward starts low and GRPO visibly
    raises it by learning the format, a decision shared by every prompt (fast to learn), on top
    of sharpening the answers. sft_warm_start uses row["target"] when present.
    """
    if not 0.0 <= unboxed_rate <= 1.0:
        raise ValueError(f"unboxed_rate must be in [0, 1], got {unboxed_rate}")
    rng = random.Random(seed)
    out = []
    for row in rows:
        bare = rng.random() < unboxed_rate
        out.append({**row, "target": str(row["answer"]) if bare else format_target(row)})
    return out


def sft_target(row: dict[str, Any]) -> str:
    """The SFT completion of a row: its "target" field if set, else format_target(row)."""
    target = row.get("target")
    return target if target is not None else format_target(row)


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as JSON Lines (one object per line, UTF-8); create parent dirs; return path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return out


def _scan_jsonl(path: Path, fields: Sequence[str]) -> None:
    """Re-read a JSONL file line by line and raise DatasetFormatError at the first bad line
    (also: bytes that are not UTF-8, and a file without a single row)."""
    row = -1
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetFormatError(
                    f"{path}: line {lineno} (row {row + 1}): not UTF-8 text "
                    f"(byte {raw[exc.start]:#04x} at column {exc.start + 1})"
                ) from None
            if not line.strip():
                continue
            row += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(
                    f"{path}: line {lineno} (row {row}): invalid JSON ({exc.msg})"
                ) from None
            if not isinstance(obj, dict):
                raise DatasetFormatError(f"{path}: line {lineno} (row {row}): not a JSON object")
            _check_row(obj, fields, f"{path}: line {lineno} (row {row})")
    if row < 0:
        raise DatasetFormatError(f"{path}: no rows (the file is empty)")


def _check_row(row: dict[str, Any], fields: Sequence[str], where: str) -> None:
    """Raise DatasetFormatError naming `where` and the field if a required field is missing."""
    for name in fields:
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            state = "missing" if name not in row else "empty"
            raise DatasetFormatError(f"{where}: field '{name}' is {state}")


def _jsonl_line_of_row(path: Path, row_index: int) -> int | None:
    """1-based line number of the row_index-th non-blank line of a JSONL file."""
    seen = -1
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                seen += 1
                if seen == row_index:
                    return lineno
    return None


def _load_with_datasets(path_or_name: str, split: str):
    """A `datasets.Dataset`: local file by suffix, local folder, or hub dataset name."""
    import datasets

    path = Path(path_or_name)
    if path.is_file():
        builder = LOCAL_SUFFIXES.get(path.suffix.lower())
        if builder is None:
            raise DatasetFormatError(
                f"{path}: unsupported file type (use one of {sorted(LOCAL_SUFFIXES)})"
            )
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
    return datasets.load_dataset(path_or_name, split=split)


def load_prompt_dataset(
    path_or_name: str | Path,
    split: str = "train",
    *,
    fields: Sequence[str] = ("prompt", "answer"),
) -> list[dict[str, Any]]:
    """Load prompt rows (list of dicts) and check that every row has the required `fields`.

    A local .jsonl/.json/.parquet file or folder is read with `datasets`; any other string is a
    hub dataset name (`datasets.load_dataset(name, split=split)`). A row lacking a field, or a
    JSONL line that is not valid JSON, raises one DatasetFormatError that names the file, the
    line (JSONL) and row index, and the field. Non-string answers are converted with str().
    """
    source = str(path_or_name)
    path = Path(source)
    is_jsonl = path.is_file() and path.suffix.lower() in (".jsonl", ".json")
    try:
        rows = _load_with_datasets(source, split).to_list()  # decoding can fail as late as this
    except DatasetFormatError:
        raise
    except Exception as exc:  # datasets/pyarrow parse errors name no line: find it ourselves
        if is_jsonl:
            _scan_jsonl(path, fields)
        raise DatasetFormatError(f"{source}: cannot be read as a dataset: {exc}") from exc
    for i, row in enumerate(rows):
        try:
            _check_row(row, fields, f"{source}: row {i}")
        except DatasetFormatError:
            line = _jsonl_line_of_row(path, i) if is_jsonl else None
            where = f"{source}: line {line} (row {i})" if line else f"{source}: row {i}"
            _check_row(row, fields, where)
        if "answer" in row and row["answer"] is not None and not isinstance(row["answer"], str):
            row["answer"] = str(row["answer"])
    return rows
