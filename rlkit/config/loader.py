"""YAML recipe -> validated RecipeConfig, with dotted command-line overrides.

Every problem becomes one `ConfigError` line naming the key and what was expected, raised before
any engine starts (`rlkit train recipes/x.yaml trainer.lrr=1` -> "trainer.lrr: unknown key ...").
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from rlkit.config.schema import RecipeConfig
from rlkit.config.semantics import check_semantics


class ConfigError(ValueError):
    """A recipe problem: `key` is the dotted key, the message says what was expected."""

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key = key
        where = f" (in {source})" if source else ""
        super().__init__(f"{key}: {message}{where}")


def _yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting dicts into dataclasses."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        names = " or ".join(_type_name(a) for a in args)
        raise ConfigError(key, f"expected {names}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:  # null clears a mapping: `algo.credit_kw=null` on the command line
            return {}
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML reads "1e-5" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ConfigError(key, f"expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping of {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {_yaml_key(f): f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(dotted, f"unknown key (known keys here: {known})")
        f = fields[key]
        kwargs[f.name] = _coerce(value, hints[f.name], dotted)
    return cls(**kwargs)


def parse_overrides(overrides: list[str]) -> dict:
    """`["trainer.lr=1e-5", "async.alpha=2"]` -> nested dict; values parsed as YAML scalars."""
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "expected an override of the form dotted.key=value")
        key, raw = item.split("=", 1)
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(key, "conflicting overrides")
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_from_dict(data: dict, source: str | None = None) -> RecipeConfig:
    """Validate a nested dict (YAML + overrides) into a RecipeConfig."""
    try:
        cfg = _build(RecipeConfig, data, "")
    except ConfigError as exc:
        raise ConfigError(exc.key, str(exc).split(": ", 1)[1], source) from None
    for key, message in check_semantics(cfg):
        raise ConfigError(key, message, source)
    return cfg


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    """Read a YAML recipe, apply dotted overrides, validate. Raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("recipe", f"file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("recipe", f"invalid YAML in {path}: {exc}") from None
    data = _merge(data, parse_overrides(overrides or []))
    return config_from_dict(data, source=str(path))


def to_dict(cfg: Any) -> Any:
    """RecipeConfig -> plain nested dict with YAML key names (for runs/<name>/config.yaml)."""
    if dataclasses.is_dataclass(cfg):
        return {_yaml_key(f): to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, list):
        return [to_dict(v) for v in cfg]
    return cfg
