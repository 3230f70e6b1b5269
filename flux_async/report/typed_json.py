"""Dataclasses that are JSON objects: a field per key, named like the key (or `field(metadata={"json": ...})`).

A field whose value is ABSENT is left out of the JSON (a key only some reports have); a field marked
`metadata={"flatten": True}` writes its own keys into its parent's object; keys no field knows are kept in `extra`,
so `from_json(d).to_json() == d` for any report, older or newer.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, Literal, Self


class Absent:
    """The value of a key a report does not have (falsy, unlike a key holding null)."""

    _instance: Absent | None = None

    def __new__(cls) -> Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:  # so that `if value:` narrows ABSENT away
        return False

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = Absent()


def _name(f: dataclasses.Field) -> str:
    return f.metadata.get("json", f.name)


def _nested(hint) -> tuple[str, type[JsonObject] | None]:
    """How a field's type nests JSON objects: ('one' | 'list' | 'dict' | 'plain', the JsonObject type)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            shape = _nested(arg)
            if shape[1] is not None:
                return shape
        return "plain", None
    if origin is list and typing.get_args(hint) and _is_object(typing.get_args(hint)[0]):
        return "list", typing.get_args(hint)[0]
    if origin is dict and len(typing.get_args(hint)) == 2 and _is_object(typing.get_args(hint)[1]):
        return "dict", typing.get_args(hint)[1]
    return ("one", hint) if _is_object(hint) else ("plain", None)


def _is_object(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, JsonObject)


_Fields = list[tuple[dataclasses.Field, str, "type[JsonObject] | None"]]


# The cached functions take a plain `type`: mypy does not count a dataclass's class as Hashable (the dataclass sets
# its instances' `__hash__` to None), though the class itself hashes; the wrappers accept any class.
def _fields(cls: type) -> _Fields:
    return _cached_fields(cls)


def _known_keys(cls: type) -> frozenset[str]:
    return _cached_known_keys(cls)


@cache
def _cached_fields(cls: type) -> _Fields:
    hints = typing.get_type_hints(cls)
    return [(f, *_nested(hints[f.name])) for f in dataclasses.fields(cls) if f.name != "extra"]


@cache
def _cached_known_keys(cls: type) -> frozenset[str]:
    keys: set[str] = set()
    for f, _, nested in _fields(cls):
        if f.metadata.get("flatten"):
            assert nested is not None  # a flattened field is a JsonObject
            keys |= _known_keys(nested)
        else:
            keys |= {_name(f)}
    return frozenset(keys)


def _dump(value, shape: str):
    if value is None:
        return None
    if shape == "one":
        return value.to_json()
    if shape == "list":
        return [item.to_json() for item in value]
    if shape == "dict":
        return {key: item.to_json() for key, item in value.items()}
    return value


def _load(value, shape: str, cls: type[JsonObject] | None):
    if value is None or shape == "plain":
        return value
    assert cls is not None  # every shape but "plain" comes with its JsonObject type
    if shape == "one":
        return cls.from_json(value)
    if shape == "list":
        return [cls.from_json(item) for item in value]
    if shape == "dict":
        return {key: cls.from_json(item) for key, item in value.items()}
    return value


@dataclasses.dataclass
class JsonObject:
    """Base of the report's types; subclasses: dataclasses ending with `extra: dict = field(default_factory=dict)`."""

    def to_json(self) -> dict:
        """The JSON object: fields in their declared order, then `extra`'s keys."""
        result = {}
        for f, shape, _ in _fields(type(self)):
            value = getattr(self, f.name)
            if value is ABSENT:
                continue
            if f.metadata.get("flatten"):
                result.update(value.to_json())
            else:
                result[_name(f)] = _dump(value, shape)
        result.update(getattr(self, "extra", {}))
        return result

    @classmethod
    def from_json(cls, data: dict) -> Self:
        """The object of a JSON dict; missing keys take their defaults, unknown keys go to `extra`."""
        values: dict[str, Any] = {}
        for f, shape, nested in _fields(cls):
            if f.metadata.get("flatten"):
                assert nested is not None  # a flattened field is a JsonObject
                values[f.name] = nested.from_json(data)
            elif _name(f) in data:
                values[f.name] = _load(data[_name(f)], shape, nested)
        if any(f.name == "extra" for f in dataclasses.fields(cls)):
            values["extra"] = {k: v for k, v in data.items() if k not in _known_keys(cls)}
        return cls(**values)
