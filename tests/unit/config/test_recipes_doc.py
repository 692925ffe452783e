"""docs/recipes.md lists every key of the recipe schema, one per row, with the schema's default.

A row is `| \\`dotted.key\\` | \\`default\\` | meaning |`; the default is written as in YAML
(`null`, `true`, `[]`, `{}`, a flow mapping), numbers may be written `1e-4`.  Keys of the items
of a list of sections (`reward.fns`) are written `reward.fns[].fn`.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from rlkit.config.schema import RecipeConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "recipes.md"
ROW = re.compile(r"^\|\s*`([A-Za-z_][\w.\[\]]*)`\s*\|\s*`([^`]*)`\s*\|")


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _plain(value: Any) -> Any:
    """Dataclass instances as the dicts a recipe would write."""
    if dataclasses.is_dataclass(value):
        return {_key(f): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _list_item_class(f: dataclasses.Field, owner: type) -> type | None:
    """The section class of a `list[Section]` field, else None."""
    hint = typing.get_type_hints(owner)[f.name]
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return item if dataclasses.is_dataclass(item) else None
    return None


def schema_defaults(cls: type = RecipeConfig, prefix: str = "") -> dict[str, Any]:
    """Every leaf key of the schema (sections expanded) -> its default."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key, default = prefix + _key(f), _default(f)
        if dataclasses.is_dataclass(default):
            out.update(schema_defaults(type(default), key + "."))
            continue
        out[key] = _plain(default)
        item = _list_item_class(f, cls)
        if item is not None:
            out.update(schema_defaults(item, key + "[]."))
    return out


def documented() -> dict[str, str]:
    """Key -> default text of every table row of docs/recipes.md (a key twice is an error)."""
    rows: dict[str, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            assert m.group(1) not in rows, f"docs/recipes.md lists {m.group(1)} twice"
            rows[m.group(1)] = m.group(2)
    return rows


def parse_default(text: str) -> Any:
    """The value a documented default stands for (YAML, plus `1e-4`-style floats)."""
    text = text.strip()
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text) if text else ""


def test_parse_default_reads_the_doc_notation():
    assert parse_default("1e-4") == 1e-4 and parse_default("16") == 16
    assert parse_default("null") is None and parse_default("false") is False
    assert parse_default('"{prompt}"') == "{prompt}" and parse_default('""') == ""
    assert parse_default("[q_proj, v_proj]") == ["q_proj", "v_proj"]
    assert parse_default("[{fn: f, weight: 1.0}]") == [{"fn": "f", "weight": 1.0}]
    assert parse_default("token-mean") == "token-mean" and parse_default("+") == "+"


def test_schema_defaults_expand_sections_and_list_items():
    defaults = schema_defaults()
    assert defaults["async.alpha"] == 0  # the `async` YAML key of the `async_` field
    assert defaults["model.tiny.hidden_size"] == RecipeConfig().model.tiny.hidden_size
    assert defaults["reward.fns[].fn"] == RecipeConfig().reward.fns[0].fn
    assert defaults["reward.fns"] == [{"fn": defaults["reward.fns[].fn"], "weight": 1.0,
                                       "kwargs": {}}]  # fmt: skip


def test_every_schema_key_is_documented_and_nothing_else():
    keys, doc = set(schema_defaults()), set(documented())
    assert not keys - doc, f"schema keys missing from docs/recipes.md: {sorted(keys - doc)}"
    assert not doc - keys, f"docs/recipes.md lists keys the schema lacks: {sorted(doc - keys)}"


def test_every_documented_default_is_the_schema_default():
    defaults = schema_defaults()
    wrong = [
        f"{key}: docs say {text!r}, schema has {defaults[key]!r}"
        for key, text in documented().items()
        if key in defaults and parse_default(text) != defaults[key]
    ]
    assert not wrong, "docs/recipes.md defaults differ from rlkit/config/schema.py:\n" + "\n".join(
        wrong
    )
