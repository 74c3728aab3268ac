"""Settings as nested frozen dataclasses: one value passed in, one pair of functions to and
from plain data (JSON, TOML), and overrides by each field's own name.

A group of settings (the training recipe of recipe.py, the deblurring options of
pipeline.py) is a frozen dataclass whose fields are scalars, tuples or other such
dataclasses (its sections). Field names are unique across a group's sections, so a field
can be named alone: `lr`, `p_high_iso`, `strength`. That name is what a command-line
option, a keyword argument and a recipe file use, and it is declared once, in the
dataclass, with its default and a comment.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from .errors import SettingsError


def sections(cls: type) -> dict[str, type]:
    """The fields of `cls` that are themselves settings dataclasses, by name."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def leaf_fields(cls: type) -> dict[str, tuple[tuple[str, ...], Any, dataclasses.Field]]:
    """Every scalar or tuple field of `cls` and its sections: name -> (section path, type, field)."""
    hints = typing.get_type_hints(cls)
    found: dict[str, tuple[tuple[str, ...], Any, dataclasses.Field]] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            for name, (path, kind, field) in leaf_fields(hints[f.name]).items():
                if name in found:
                    raise TypeError(f"{cls.__name__}: two settings named {name}")
                found[name] = ((f.name, *path), kind, field)
        else:
            if f.name in found:
                raise TypeError(f"{cls.__name__}: two settings named {f.name}")
            found[f.name] = ((), hints[f.name], f)
    return found


def to_dict(value: Any) -> dict:
    """A settings dataclass as plain data: nested dicts, tuples as lists, paths as strings."""
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(value)


def from_dict(cls: type, data: dict, where: str = "settings") -> Any:
    """The inverse of to_dict; fields missing from `data` keep their defaults, and an
    unknown field is a SettingsError naming it (a typo, or a file from a newer nrkdeblur)."""
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: expected a table of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SettingsError(f"{where}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    values = {}
    for name, v in data.items():
        kind = hints[name]
        values[name] = from_dict(kind, v, f"{where}.{name}") if dataclasses.is_dataclass(kind) else coerce(kind, v, name)
    return cls(**values)


def coerce(kind: Any, value: Any, name: str) -> Any:
    """`value` (from JSON, TOML or the command line) as the type a field declares."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(inner, value, name)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{name}: expected a list, got {value!r}")
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise SettingsError(f"{name}: expected {len(items)} values, got {len(value)}")
        return tuple(coerce(k, v, name) for k, v in zip(items, value))
    if kind is Path:
        return Path(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and not (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        raise SettingsError(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


def override(value: Any, **changes: Any) -> Any:
    """`value` with fields replaced by their own names, in whichever section they live;
    an unknown name is a SettingsError."""
    index = leaf_fields(type(value))
    unknown = sorted(set(changes) - set(index))
    if unknown:
        raise SettingsError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    by_section: dict[tuple[str, ...], dict[str, Any]] = {}
    for name, v in changes.items():
        by_section.setdefault(index[name][0], {})[name] = v
    return _replace_at(value, by_section)


def _replace_at(value: Any, by_section: dict[tuple[str, ...], dict[str, Any]]) -> Any:
    own = dict(by_section.get((), {}))
    for section in {path[0] for path in by_section if path}:
        inner = {path[1:]: v for path, v in by_section.items() if path and path[0] == section}
        own[section] = _replace_at(getattr(value, section), inner)
    return dataclasses.replace(value, **own) if own else value


def flatten(value: Any) -> dict[str, Any]:
    """Every leaf setting of `value` by its own name."""
    return {name: _get(value, path + (name,)) for name, (path, _, _) in leaf_fields(type(value)).items()}


def differences(a: Any, b: Any, ignore: tuple[str, ...] = ()) -> list[str]:
    """The names of the leaf settings whose values differ between a and b."""
    fa, fb = flatten(a), flatten(b)
    return [k for k in fa if k not in ignore and to_dict_value(fa[k]) != to_dict_value(fb[k])]


def to_dict_value(v: Any) -> Any:
    return [to_dict_value(x) for x in v] if isinstance(v, (tuple, list)) else str(v) if isinstance(v, Path) else v


def _get(value: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        value = getattr(value, name)
    return value
