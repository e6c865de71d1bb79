"""Avro single-object encoding of events and output records.

Wire layout (Avro spec, "Single-object encoding")::

    C3 01 | 8-byte CRC-64-AVRO fingerprint of the writer schema, little-endian | body

The body is the Avro binary encoding of the record under the writer schema. A
reader looks the fingerprint up among every stored version of the schema and, for
an older version, resolves it into the current one (fields added since then take
their defaults, unknown enum symbols their enum default).

The current version of each schema is written and read by
:mod:`pipeline.core.avro_binary`, an encoder/decoder specialised to that schema and
compiled with mypyc (issue 14: about 4x fastavro's encode; the body's decode
about 7x, a whole event decode with its InteractionEvent about 3x); older
versions, which need Avro resolution, and a schema it does not implement go
through fastavro.

Codecs own their errors: whatever either path raises on bad bytes becomes a
:class:`DecodeError` (or :class:`UnknownSchemaError`), never a library exception.
On the fastavro path enum fields are read as their int index and checked by
:mod:`.avro_enums`, because fastavro decodes a negative index as another symbol;
avro_binary checks every enum and union index itself.
Decoding does not validate business rules; that is :mod:`pipeline.contract.validate`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pipeline.contract.avro_enums import EnumField, enums_as_ints, indexes_to_symbols
from pipeline.contract.event import InteractionEvent, event_from_record
from pipeline.contract.schemas import SchemaVersion, load_versions
from pipeline.core.avro_binary import (
    AvroDecodeError,
    Node,
    UnsupportedSchema,
    build_program,
    decode,
    encode_into,
    encode_object,
    field_names,
)
from pipeline.errors import ContractError, DecodeError, UnknownSchemaError

MAGIC = b"\xc3\x01"
HEADER_LENGTH = len(MAGIC) + 8
EVENT_SCHEMA = "interaction_event"

# Output record fields that hold a nested mapping in the dataclass but a JSON
# string in the Avro schema (LateEvent.event keeps the raw input event without
# nesting the input schema inside the output schema).
_JSON_STRING_FIELDS: Mapping[str, tuple[str, ...]] = {"late_event": ("event",)}

# fastavro's decode errors on garbage or truncated bodies: a short read (EOFError,
# StopIteration), a bad enum/union index (IndexError), a negative or absurd length
# (ValueError, MemoryError, OverflowError), broken UTF-8 (UnicodeDecodeError).
_BODY_ERRORS = (
    EOFError,
    StopIteration,
    IndexError,
    KeyError,
    ValueError,
    TypeError,
    MemoryError,
    OverflowError,
    UnicodeDecodeError,
)


def _raw_longs(schema: Any) -> Any:
    """A copy of ``schema`` without ``timestamp-millis`` logical types.

    Times are epoch milliseconds everywhere in cxstream. Reading them as plain
    longs skips fastavro's int -> datetime conversion and our datetime -> int
    conversion back, which is a large share of decode cost; the binary encoding is
    the same, so the fingerprint (taken from the stored schema) does not change.
    """
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis" and schema.get("type") == "long":
            return "long"
        return {key: _raw_longs(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_raw_longs(item) for item in schema]
    return schema


def _without_docs(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {key: _without_docs(value) for key, value in schema.items() if key != "doc"}
    if isinstance(schema, list):
        return [_without_docs(item) for item in schema]
    return schema


def _widened_enum(older: Any, newer: Any) -> bool:
    """Whether ``newer`` is the enum ``older`` (or a union around it) with symbols added.

    Everything but the symbols must be equal, and every symbol of ``older`` must
    be in ``newer``: then Avro resolution reads each old symbol as itself.
    """
    if isinstance(older, list) and isinstance(newer, list) and len(older) == len(newer):
        return all(
            old == new or _widened_enum(old, new) for old, new in zip(older, newer, strict=True)
        )
    if not (isinstance(older, dict) and isinstance(newer, dict)):
        return False
    if older.get("type") != "enum" or newer.get("type") != "enum":
        return False
    rest_old = {key: value for key, value in older.items() if key != "symbols"}
    rest_new = {key: value for key, value in newer.items() if key != "symbols"}
    return rest_old == rest_new and set(older["symbols"]) <= set(newer["symbols"])


def appended_null_fields(older: Any, newer: Any) -> tuple[str, ...] | None:
    """Names of the fields ``newer`` appends to ``older`` if that is all it changes.

    None unless ``older``'s fields are, docs aside, exactly the first fields of
    ``newer`` (an enum field may have gained symbols, as ``type`` did in v3) and
    every appended field defaults to null. Then Avro resolution of ``older`` data
    into ``newer`` is "read ``older``, set the appended fields to None" (an old
    enum symbol reads as itself), which the codec does without fastavro's second,
    resolving read: that read halves decode throughput for producers still on an
    older version.
    """
    old, new = _without_docs(older), _without_docs(newer)
    old_fields, new_fields = old.get("fields"), new.get("fields")
    if not isinstance(old_fields, list) or not isinstance(new_fields, list):
        return None
    rest = {key: value for key, value in old.items() if key != "fields"}
    if rest != {key: value for key, value in new.items() if key != "fields"}:
        return None
    if len(new_fields) < len(old_fields):
        return None
    for old_field, new_field in zip(old_fields, new_fields, strict=False):
        if old_field == new_field:
            continue
        same_but_type = {k: v for k, v in old_field.items() if k != "type"} == {
            k: v for k, v in new_field.items() if k != "type"
        }
        if not (same_but_type and _widened_enum(old_field["type"], new_field["type"])):
            return None
    appended = new_fields[len(old_fields) :]
    if not all("default" in field and field["default"] is None for field in appended):
        return None
    return tuple(field["name"] for field in appended)


@dataclass(frozen=True, slots=True)
class _Reading:
    """How to read one stored version.

    ``indexed`` is the version's writer schema with enums as ints (read first, so
    every enum index is checked); ``resolve`` is the fastavro (writer, reader)
    pair that turns an older version into the current one, None for the current
    and for an older version that the current one only extends by ``appended``
    null-default fields (those are set to None instead).
    """

    indexed: Any
    enum_fields: tuple[EnumField, ...]
    resolve: tuple[Any, Any] | None
    appended: tuple[str, ...] = ()


class _VersionedCodec:
    """Single-object framing shared by the event codec and the record codec."""

    def __init__(self, schema_name: str, versions: list[SchemaVersion] | None = None) -> None:
        self.schema_name = schema_name
        versions = versions if versions is not None else load_versions(schema_name)
        current = versions[-1]
        self.version = current.version
        self.fingerprint = current.fingerprint
        self._header = MAGIC + current.fingerprint
        self._writer: Any = parse_schema(_raw_longs(current.raw))
        # The compiled program of the current version (None: fastavro writes and reads it).
        self._program: Node | None
        try:
            self._program = build_program(_raw_longs(current.raw))
        except UnsupportedSchema:
            self._program = None
        self._field_names = field_names(self._program) if self._program is not None else []
        self._readers: dict[bytes, _Reading] = {}
        for version in versions:
            indexed, enum_fields = enums_as_ints(_raw_longs(version.raw))
            appended = appended_null_fields(version.raw, current.raw)
            resolve = (
                None
                if appended is not None
                else (parse_schema(_raw_longs(version.raw)), self._writer)
            )
            self._readers[version.fingerprint] = _Reading(
                parse_schema(indexed), enum_fields, resolve, appended or ()
            )

    def _encode_record(self, record: Mapping[str, Any]) -> bytes:
        if self._program is not None:
            buffer = bytearray(self._header)
            try:
                encode_into(self._program, record, buffer)
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
                raise self._misfit(exc) from exc
            return bytes(buffer)
        out = BytesIO()
        out.write(self._header)
        try:
            schemaless_writer(out, self._writer, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise self._misfit(exc) from exc
        return out.getvalue()

    def _misfit(self, exc: Exception) -> ContractError:
        return ContractError(
            f"{self.schema_name}: record does not fit schema v{self.version}: {exc}"
        )

    def _fingerprint(self, data: bytes) -> bytes:
        """The writer fingerprint in the header of ``data``; DecodeError without a header."""
        if len(data) < HEADER_LENGTH or data[:2] != MAGIC:
            raise DecodeError(
                f"{self.schema_name}: not Avro single-object encoded "
                "(expected marker c301 and an 8-byte fingerprint, "
                f"got {data[:10].hex() or 'no bytes'})"
            )
        return bytes(data[2:HEADER_LENGTH])

    def _current_values(self, data: bytes) -> list[Any]:
        """The field values of current-version ``data`` in schema order (compiled program)."""
        assert self._program is not None
        if not isinstance(data, bytes):  # a memoryview or bytearray: the program reads bytes
            data = bytes(data)
        try:
            values, end = decode(self._program, data, HEADER_LENGTH)
        except AvroDecodeError as exc:
            if exc.field is not None:  # an enum index outside the symbols
                raise DecodeError(f"{self.schema_name}: {exc}", field=exc.field) from exc
            raise DecodeError(f"{self.schema_name}: body is truncated or corrupt ({exc})") from exc
        if end != len(data):
            raise DecodeError(
                f"{self.schema_name}: {len(data) - end} unexpected bytes after the record"
            )
        return values

    def _decode_record(self, data: bytes) -> dict[str, Any]:
        if self._program is not None and data[:HEADER_LENGTH] == self._header:
            return dict(zip(self._field_names, self._current_values(data), strict=True))
        fingerprint = self._fingerprint(data)
        try:
            reading = self._readers[fingerprint]
        except KeyError:
            raise UnknownSchemaError(
                f"{self.schema_name}: unknown schema fingerprint {fingerprint.hex()}; "
                f"known: {', '.join(fp.hex() for fp in self._readers)}"
            ) from None
        body = BytesIO(data)
        body.seek(HEADER_LENGTH)
        record: Any = self._read(body, reading.indexed, None)  # a record reads as a dict
        if body.tell() != len(data):
            raise DecodeError(
                f"{self.schema_name}: {len(data) - body.tell()} unexpected bytes after the record"
            )
        indexes_to_symbols(self.schema_name, record, reading.enum_fields)
        for name in reading.appended:
            record[name] = None
        if reading.resolve is not None:
            # An older version: its indexes are checked; now let fastavro resolve it
            # into the current schema (defaults, enum fallbacks). Reads it twice,
            # but only records from producers still on an old version pay that.
            body.seek(HEADER_LENGTH)
            record = self._read(body, *reading.resolve)
        return record

    def _read(self, body: BytesIO, writer: Any, reader: Any) -> Any:
        try:
            return schemaless_reader(body, writer, reader)
        except _BODY_ERRORS as exc:
            raise DecodeError(
                f"{self.schema_name}: body is truncated or corrupt "
                f"({type(exc).__name__}: {exc or 'short read'})"
            ) from exc


class EventCodec(_VersionedCodec):
    """Encode :class:`InteractionEvent` with the current schema; decode any stored version."""

    def __init__(self, versions: list[SchemaVersion] | None = None) -> None:
        super().__init__(EVENT_SCHEMA, versions)
        # Building the event positionally from the decoded values is ~1.5x faster
        # than by name, and the event build is a fifth of decode cost. It is only
        # safe when the current schema lists the fields in the dataclass's order
        # (the nested ``identifier`` last, flattened into ``identifier_kind`` and
        # ``identifier_value``); older versions go through fastavro's resolution,
        # which may reorder.
        current_fields = [f["name"] for f in self._writer["fields"]]
        flat_fields = [f.name for f in fields(InteractionEvent)]
        self._positional = current_fields == [
            *flat_fields[:-2],
            "identifier",
        ] and flat_fields[-2:] == ["identifier_kind", "identifier_value"]

    def encode(self, event: InteractionEvent) -> bytes:
        """Single-object bytes of ``event`` under the current schema version.

        Raises :class:`ContractError` when the event cannot be written at all
        (e.g. a ``type`` that is not an enum symbol); run validation first.
        """
        if self._program is None:
            return self._encode_record(event.to_record())
        # The event's attributes carry the schema's field names (``identifier`` is
        # a property giving the nested record), so the program reads them directly
        # instead of building ``to_record()``: the same bytes, a third less time.
        buffer = bytearray(self._header)
        try:
            encode_object(self._program, event, buffer)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise self._misfit(exc) from exc
        return bytes(buffer)

    def decode(self, data: bytes) -> InteractionEvent:
        """The event in ``data``; raises :class:`DecodeError` / :class:`UnknownSchemaError`."""
        if self._positional and self._program is not None and data[:HEADER_LENGTH] == self._header:
            values = self._current_values(data)
            identifier = values.pop()
            if identifier is not None:
                values += (identifier["kind"], identifier["value"])
            return InteractionEvent(*values)
        record = self._decode_record(data)
        try:
            # Current-version records and records of a version the current one
            # only extends (appended fields set last) have the current field order.
            if self._positional and self._readers[data[2:HEADER_LENGTH]].resolve is None:
                *values, identifier = record.values()
                if identifier is not None:
                    values += (identifier["kind"], identifier["value"])
                return InteractionEvent(*values)
            return event_from_record(record)
        except (KeyError, TypeError) as exc:  # only reachable with a broken stored schema
            raise DecodeError(f"{EVENT_SCHEMA}: decoded record lacks {exc}") from exc


class RecordCodec(_VersionedCodec):
    """Codec for one output record schema (``session``, ``contact``, ``sla_event`` ...).

    ``encode(record.to_dict())`` and ``decode(bytes) -> dict`` round-trip exactly,
    including ``LateEvent.event`` (a JSON string on the wire, a dict in memory).
    """

    def __init__(self, schema_name: str, versions: list[SchemaVersion] | None = None) -> None:
        super().__init__(schema_name, versions)
        self._json_fields = _JSON_STRING_FIELDS.get(schema_name, ())

    def encode(self, record: Mapping[str, Any]) -> bytes:
        if self._json_fields:
            record = dict(record)
            for name in self._json_fields:
                record[name] = json.dumps(record[name], sort_keys=True, separators=(",", ":"))
        return self._encode_record(record)

    def encode_record(self, record: object) -> bytes:
        """``encode(record.to_dict())`` without building the dict: fields are read as attributes.

        The same bytes (tests/unit/test_avro_binary.py); an attribute the object
        lacks takes the schema default. Records with JSON-string fields
        (``LateEvent``) and schemas on the fastavro path go through ``to_dict``.
        """
        if self._json_fields or self._program is None:
            to_dict = getattr(record, "to_dict", None)
            if to_dict is None:
                raise self._misfit(TypeError(f"{type(record).__name__} has no to_dict()"))
            return self.encode(to_dict())
        buffer = bytearray(self._header)
        try:
            encode_object(self._program, record, buffer)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise self._misfit(exc) from exc
        return bytes(buffer)

    def decode(self, data: bytes) -> dict[str, Any]:
        record = self._decode_record(data)
        for name in self._json_fields:
            try:
                record[name] = json.loads(record[name])
            except ValueError as exc:
                raise DecodeError(f"{self.schema_name}.{name}: not JSON: {exc}") from exc
        return record
