"""Typed configuration: frozen dataclasses filled from YAML with strict key checks.

`from_mapping` turns a nested mapping (as `yaml.safe_load` returns it) into a frozen
dataclass, checking every key against the dataclass fields: an unknown key or a
missing required key is a `ConfigError` that lists the valid keys. Supported field
types are ``bool``, ``int``, ``float``, ``str``, nested dataclasses, ``tuple[float, ...]``
and ``tuple[Dataclass, ...]``; that is all the configuration needs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from pathlib import Path
from typing import Any

import yaml

from slitcli.errors import ConfigError

__all__ = ["from_mapping", "load_yaml", "to_dict", "config_hash", "with_changes"]


def load_yaml(path: str | Path) -> dict:
    """Read a YAML file that must hold a mapping at its top level."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        msg = f"{path}: file not found"
        raise ConfigError(msg) from None
    except (OSError, UnicodeDecodeError) as err:
        msg = f"{path}: cannot read as text YAML ({err.__class__.__name__})"
        raise ConfigError(msg) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        msg = f"{path}: malformed YAML{where}"
        raise ConfigError(msg) from None
    if not isinstance(data, dict):
        msg = f"{path}: expected a YAML mapping of keys to values at the top level"
        raise ConfigError(msg)
    return data


def from_mapping(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, checking keys and types.

    Parameters
    ----------
    cls : type
        A dataclass type.
    data : mapping
        The values, e.g. from `yaml.safe_load`.
    where : str
        Where the mapping came from (file and key path), used in error messages.
    """
    if not isinstance(data, dict):
        msg = f"{where}: expected a mapping with keys {_field_names(cls)}"
        raise ConfigError(msg)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        msg = f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are {_field_names(cls)}"
        raise ConfigError(msg)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            msg = f"{where}: missing required key '{name}'; valid keys are {_field_names(cls)}"
            raise ConfigError(msg)
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        msg = f"{where}: {err}"
        raise ConfigError(msg) from None


def with_changes(obj: Any, where: str, **changes) -> Any:
    """A copy of dataclass `obj` with the non-None `changes`, checked as `from_mapping` checks a file.

    `where` names the source of the changes in errors (e.g. "command-line options").
    """
    changes = {k: v for k, v in changes.items() if v is not None}
    try:
        return dataclasses.replace(obj, **changes)
    except (ValueError, TypeError) as err:
        msg = f"{where} ({', '.join(sorted(changes))}): {err}"
        raise ConfigError(msg) from None


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            msg = f"{where}: expected a list, got {value!r:.60}"
            raise ConfigError(msg)
        return tuple(_convert(item_type, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            msg = f"{where}: expected true or false, got {value!r:.60}"
            raise ConfigError(msg)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{where}: expected an integer, got {value!r:.60}"
            raise ConfigError(msg)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            msg = f"{where}: expected a finite number, got {value!r:.60}"
            raise ConfigError(msg)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            msg = f"{where}: expected a string, got {value!r:.60}"
            raise ConfigError(msg)
        return value
    msg = f"{where}: unsupported configuration type {tp}"  # a programming error
    raise TypeError(msg)


def to_dict(obj: Any) -> Any:
    """A dataclass as plain lists and dicts, ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def config_hash(obj: Any) -> str:
    """First 16 hex digits of the SHA-256 of a configuration's canonical JSON."""
    text = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
