"""Checked conversion of YAML data into config dataclasses: files with `includes`, `key.sub=value` overrides,
type checks that name the file (or the override) and the dotted key. Generic: it knows no run section."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from clipvil.encoders.shipped import is_shipped_name


class ConfigError(ValueError):
    """A config file or override that does not match the config dataclasses."""


class Sources:
    """Remembers which file (or override) set each dotted key, to name it in errors."""

    def __init__(self, default: str) -> None:
        self.default = default
        self.by_key: dict[tuple[str, ...], str] = {}

    def record(self, data: Any, prefix: tuple[str, ...], source: str) -> None:
        self.by_key[prefix] = source
        if isinstance(data, dict):
            for key, value in data.items():
                self.record(value, prefix + (str(key),), source)

    def of(self, key: tuple[str, ...]) -> str:
        for end in range(len(key), 0, -1):
            if key[:end] in self.by_key:
                return self.by_key[key[:end]]
        return self.default


def _dotted(key: tuple[str, ...]) -> str:
    return ".".join(key) if key else "<top level>"


def fail(sources: Sources, key: tuple[str, ...], message: str) -> typing.NoReturn:
    raise ConfigError(f"{sources.of(key)}: {_dotted(key)}: {message}")


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path, sources: Sources, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Reads a YAML mapping and merges its `includes` (relative to the file) underneath it."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: includes form a cycle: {' -> '.join(str(p) for p in seen + (path,))}")
    if not path.is_file():
        where = f" (included from {seen[-1]})" if seen else ""
        raise FileNotFoundError(f"config file not found: {path}{where}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    includes = data.pop("includes", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: includes: expected a list of file paths, got {includes!r}")
    merged: dict[str, Any] = {}
    for include in includes:
        merged = _deep_merge(merged, read_yaml(path.parent / include, sources, seen + (path,)))
    sources.record(data, (), str(path))
    return _deep_merge(merged, data)


def apply_overrides(
    data: dict[str, Any], overrides: list[str], sources: Sources | None = None
) -> dict[str, Any]:
    """Applies `key.sub=value` overrides (values parsed as YAML scalars/flow lists) to a raw config dict."""
    data = _deep_merge({}, data)
    for item in overrides:
        key_text, sep, value_text = item.partition("=")
        key = tuple(key_text.strip().split("."))
        if not sep or not all(key):
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        try:
            value = yaml.safe_load(value_text)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from err
        node = data
        for depth, part in enumerate(key[:-1]):
            if part not in node and sources is not None:
                sources.record({}, key[: depth + 1], f"override {item!r}")  # a section the override creates
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {_dotted(key[: depth + 1])} is not a section")
            node = child
        node[key[-1]] = value
        if sources is not None:
            sources.record(value, key, f"override {item!r}")
    return data


def convert(tp: Any, value: Any, key: tuple[str, ...], sources: Sources) -> Any:
    """Checks `value` against the annotation `tp` and converts it (lists to tuples, numbers to float...)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build_checked(tp, value, key, sources)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) != 1:
            raise TypeError(f"{_dotted(key)}: unions other than `X | None` are not supported in configs")
        return convert(arms[0], value, key, sources)
    if origin is Literal:
        if value not in args:
            fail(sources, key, f"must be one of {list(args)}, got {value!r}")
        return value
    if origin is list and isinstance(value, str | int | float | Path) and not isinstance(value, bool):
        value = [value]  # a single value where a list is expected: a list of one
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            fail(sources, key, f"expected a list, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                fail(sources, key, f"expected {len(args)} values, got {len(value)}: {value!r}")
            return tuple(
                convert(a, v, key + (str(i),), sources) for i, (a, v) in enumerate(zip(args, value))
            )
        items = [convert(args[0], v, key + (str(i),), sources) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            fail(sources, key, f"expected a mapping, got {value!r}")
        return {str(k): convert(args[1], v, key + (str(k),), sources) for k, v in value.items()}
    return _convert_scalar(tp, value, key, sources)


def _convert_scalar(tp: Any, value: Any, key: tuple[str, ...], sources: Sources) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            fail(sources, key, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(sources, key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        # PyYAML reads `1e-4` (no dot) as a string: accept any text that float() parses.
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            fail(sources, key, f"expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            fail(sources, key, f"expected a number, got {value!r}")
    if tp is str:
        if not isinstance(value, str):
            fail(sources, key, f"expected a string, got {value!r} (quote it in YAML)")
        return value
    if tp is Path:
        if not isinstance(value, str | Path) or not str(value):
            fail(sources, key, f"expected a path, got {value!r}")
        if is_shipped_name(value):  # a shipped tower's short name (clip-vit-tiny) stays a name, not ./clip-vit-tiny
            return Path(value)
        return Path(value).expanduser().absolute()
    raise TypeError(f"{_dotted(key)}: config fields of type {tp!r} are not supported")


def build_checked(cls: type, data: Any, key: tuple[str, ...], sources: Sources) -> Any:
    """Builds dataclass `cls` from a mapping, failing on unknown keys and bad values."""
    if not isinstance(data, dict):
        fail(sources, key, f"expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for name in data:
        if name not in known:
            fail(
                sources, key + (str(name),), f"unknown key (known keys of {cls.__name__}: {', '.join(known)})"
            )
    defaults = {f.name: f.default_factory() for f in dataclasses.fields(cls)  # type: ignore[misc]
                if f.default_factory is not dataclasses.MISSING}
    values = {}
    for name, value in data.items():
        if isinstance(value, dict) and isinstance(defaults.get(name), dict) and defaults[name]:
            value = {**defaults[name], **value}  # mappings with defaults merge key by key
        values[name] = convert(hints[name], value, key + (name,), sources)
    return cls(**values)


def build_dataclass(cls: type, data: dict[str, Any], source: str = "<dict>") -> Any:
    """Builds any config dataclass (e.g. one section) from a mapping with the same checks as a file."""
    return build_checked(cls, data, (), Sources(source))


def plain_data(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
