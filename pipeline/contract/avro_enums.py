"""Workaround: enum indexes are read as ints and checked here, not by fastavro.

The Avro spec encodes an enum value as the zero-based index of its symbol (an
``int``, zig-zag varint). fastavro 1.13 reads it as
``writer_schema["symbols"][index]`` (``read_enum`` in ``_read.pyx`` and
``_read_py.py``, unchanged upstream): an index past the end raises ``IndexError``,
but a *negative* index is a valid Python subscript and silently decodes as a
symbol counted from the end (``-1`` as the last symbol). The reference Python
implementation had the same defect (apache/avro pull request 3876, "reject
negative enum and union index in binary decoder"); fastavro has no option or
reader hook for it.

So the codec reads a version's enum fields as plain ``int`` (the same bytes, so
the same fingerprint and the same wire format) and maps each index to its symbol
here, where ``0 <= index < len(symbols)`` is checked. Only top-level fields are
rewritten (an enum field or a ``["null", enum]``-style union); a schema with an
enum anywhere else is refused when the codec is built, so a later schema cannot
quietly reopen the gap. Remove this module when fastavro rejects negative indexes.

Since issue 14 only older schema versions are read with fastavro (and so through
this module): the current version of each schema is read by
:mod:`pipeline.core.avro_binary`, which checks every enum and union index itself.

fastavro also wraps a negative *union* branch index. For the two-branch
``["null", X]`` unions of the event contract, ``-1`` and ``-2`` select the same
branch as ``1`` and ``0`` and decode to the same value, so no event can be made
to read differently; it is not checked (a byte walk of every record would cost
more than the whole decode).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError, DecodeError


@dataclass(frozen=True, slots=True)
class EnumField:
    """A top-level record field whose enum is read as an int index."""

    name: str
    symbols: tuple[str, ...]


def _enum_schema(field_type: Any, named: Mapping[str, Any]) -> dict[str, Any] | None:
    """The enum schema ``field_type`` is or names, else None."""
    if isinstance(field_type, str):
        field_type = named.get(field_type, field_type)
    if isinstance(field_type, dict) and field_type.get("type") == "enum":
        return field_type
    return None


def _full_name(schema: Mapping[str, Any], namespace: str | None) -> str:
    name = str(schema["name"])
    space = schema.get("namespace", namespace)
    return name if "." in name or not space else f"{space}.{name}"


def _has_enum(schema: Any) -> bool:
    if isinstance(schema, dict):
        return schema.get("type") == "enum" or any(_has_enum(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_enum(item) for item in schema)
    return False


def enums_as_ints(record_schema: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[EnumField, ...]]:
    """A copy of the raw ``record_schema`` whose top-level enum fields read as ``int``.

    Returns the copy and the rewritten fields with the symbols their indexes point
    into. Raises :class:`ConfigError` for an enum this module cannot guard (nested
    in a record, array or map, or in a union that also holds an ``int``).
    """
    namespace = record_schema.get("namespace")
    named: dict[str, Any] = {}
    fields: list[dict[str, Any]] = []
    enum_fields: list[EnumField] = []
    schema_name = record_schema.get("name")
    for field in record_schema["fields"]:
        field_type = field["type"]
        branches = field_type if isinstance(field_type, list) else [field_type]
        enums = [_enum_schema(branch, named) for branch in branches]
        found = [enum for enum in enums if enum is not None]
        for branch in branches:
            if isinstance(branch, dict) and branch.get("type") == "enum":
                named[_full_name(branch, namespace)] = branch
                named[str(branch["name"])] = branch
            elif _has_enum(branch):
                raise ConfigError(
                    f"schema {schema_name}: field {field['name']!r} nests an enum; "
                    "only top-level enum fields have their index checked"
                )
        if not found:
            fields.append(dict(field))
            continue
        if len(found) > 1 or "int" in branches:
            raise ConfigError(
                f"schema {schema_name}: field {field['name']!r} mixes an enum with "
                "another enum or an int in one union; its index cannot be checked"
            )
        enum = found[0]
        symbols = tuple(enum["symbols"])
        as_int: Any = ["int" if e is not None else b for e, b in zip(enums, branches, strict=True)]
        rewritten = {**field, "type": as_int if isinstance(field_type, list) else "int"}
        default = field.get("default")
        if isinstance(default, str) and default in symbols:
            rewritten["default"] = symbols.index(default)
        fields.append(rewritten)
        enum_fields.append(EnumField(field["name"], symbols))
    return {**record_schema, "fields": fields}, tuple(enum_fields)


def indexes_to_symbols(
    schema_name: str, record: MutableMapping[str, Any], enum_fields: tuple[EnumField, ...]
) -> None:
    """Replace each enum index in ``record`` by its symbol, in place.

    Raises :class:`DecodeError` (naming the field) for an index outside the symbols.
    """
    for enum in enum_fields:
        index = record[enum.name]
        if index is None:  # the null branch of a union
            continue
        symbols = enum.symbols
        if not 0 <= index < len(symbols):
            raise DecodeError(
                f"{schema_name}: {enum.name} has enum index {index}, outside 0..{len(symbols) - 1}",
                field=enum.name,
            )
        record[enum.name] = symbols[index]
