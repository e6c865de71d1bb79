"""The compiled Avro encoder/decoder writes what fastavro writes and reads what it reads.

Records are generated from the stored schemas themselves (the latest version of
every output schema and of the interaction event, whatever versions exist when
the tests run), so a new schema version is covered without editing this file.
Hypothesis runs derandomized: the same examples on every run, in CI too.
"""

from __future__ import annotations

import contextlib
import json
import math
from functools import cache
from io import BytesIO
from types import SimpleNamespace
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.codec import (
    EVENT_SCHEMA,
    MAGIC,
    EventCodec,
    RecordCodec,
    _raw_longs,
)
from pipeline.contract.event import event_from_record
from pipeline.contract.schemas import current, schema_names
from pipeline.core import avro_binary
from pipeline.core.avro_binary import (
    INT_MAX,
    INT_MIN,
    LONG_MAX,
    LONG_MIN,
    AvroDecodeError,
    UnsupportedSchema,
    build_program,
    decode,
    encode,
)
from pipeline.errors import ContractError, DecodeError

SCHEMAS = schema_names()
OUTPUT_SCHEMAS = [name for name in SCHEMAS if name != EVENT_SCHEMA]
JSON_SEP = (",", ":")
DERANDOMIZED = settings(derandomize=True, max_examples=150, deadline=None, database=None)


# Built once per schema: hypothesis calls the tests hundreds of times each.
@cache
def _writer_schema(name: str) -> dict[str, Any]:
    return _raw_longs(current(name).raw)


@cache
def _parsed(name: str) -> dict[str, Any]:
    return parse_schema(_writer_schema(name))


@cache
def _program(name: str) -> avro_binary.Node:
    return build_program(_writer_schema(name))


@cache
def _record_codec(name: str) -> RecordCodec:
    return RecordCodec(name)


def _fastavro_bytes(schema: Any, record: Any) -> bytes:
    """fastavro's body for ``record``; ``schema`` a stored schema's name or a schema."""
    out = BytesIO()
    schemaless_writer(
        out, _parsed(schema) if isinstance(schema, str) else parse_schema(schema), record
    )
    return out.getvalue()


def _strategy(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that fit ``schema`` (a raw .avsc type), boundaries included."""
    if isinstance(schema, list):
        return st.one_of(*(_strategy(branch, named) for branch in schema))
    if isinstance(schema, str):
        primitives: dict[str, st.SearchStrategy[Any]] = {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(INT_MIN, INT_MAX),
            "long": st.integers(LONG_MIN, LONG_MAX),
            # Doubles hold floats (NaN and infinities too) or ints, as records do.
            "double": st.floats() | st.integers(-(2**60), 2**60),
            "string": st.text(max_size=12),
            "bytes": st.binary(max_size=12),
        }
        return primitives[schema] if schema in primitives else named[schema]
    kind = schema["type"]
    if kind == "enum":
        strategy: st.SearchStrategy[Any] = st.sampled_from(schema["symbols"])
    elif kind == "array":
        return st.lists(_strategy(schema["items"], named), max_size=4)
    elif kind == "map":
        return st.dictionaries(st.text(max_size=6), _strategy(schema["values"], named), max_size=4)
    elif kind == "record":
        strategy = st.fixed_dictionaries(
            {field["name"]: _strategy(field["type"], named) for field in schema["fields"]}
        )
    else:
        return _strategy(kind, named)  # a primitive with a logical type
    named[schema["name"]] = strategy
    return strategy


@cache
def _records(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return _strategy(_writer_schema(name), {})


def _same(left: Any, right: Any) -> bool:
    """Equality with NaN equal to NaN (fastavro and avro_binary both keep NaN a NaN)."""
    if isinstance(left, float) and isinstance(right, float):
        return (math.isnan(left) and math.isnan(right)) or left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_same, left, right))
    return type(left) is type(right) and left == right


def _decoded(name: str, body: bytes) -> dict[str, Any]:
    program = _program(name)
    values, end = decode(program, body, 0)
    assert end == len(body)
    return dict(zip(avro_binary.field_names(program), values, strict=True))


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_stored_latest_schema_builds_a_program(name: str) -> None:
    program = build_program(_writer_schema(name))
    assert avro_binary.field_names(program) == [f["name"] for f in current(name).raw["fields"]]


@pytest.mark.parametrize("name", SCHEMAS)
@DERANDOMIZED
@given(data=st.data())
def test_random_records_encode_byte_for_byte_as_fastavro_and_decode_as_it_reads(
    name: str, data: st.DataObject
) -> None:
    record = data.draw(_records(name))
    expected = _fastavro_bytes(name, record)
    assert encode(_program(name), record) == expected
    assert _same(_decoded(name, expected), schemaless_reader(BytesIO(expected), _parsed(name)))


@pytest.mark.parametrize("name", OUTPUT_SCHEMAS)
@DERANDOMIZED
@given(data=st.data())
def test_encoding_a_records_attributes_gives_the_bytes_of_its_dict(
    name: str, data: st.DataObject
) -> None:
    record = data.draw(_records(name))
    codec = _record_codec(name)
    if name == "late_event":
        record["event"] = {"event_id": record["event"]}  # a dict in memory, JSON on the wire
    assert codec.encode_record(_AsAttributes(record)) == codec.encode(record)


class _AsAttributes(SimpleNamespace):
    """A record object with the dict's keys as attributes and ``to_dict``."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(**record)
        self._record = record

    def to_dict(self) -> dict[str, Any]:
        return dict(self._record)


def _codec(name: str) -> EventCodec | RecordCodec:
    return _event_codec() if name == EVENT_SCHEMA else _record_codec(name)


@cache
def _event_codec() -> EventCodec:
    return EventCodec()


def _fastavro_reads(name: str, body: bytes) -> Any:
    """What fastavro reads from ``body`` as a whole record; None when it fails."""
    stream = BytesIO(body)
    try:
        record = schemaless_reader(stream, _parsed(name), None)
    except Exception:  # any failure: the codec must then refuse the bytes
        return None
    return record if stream.tell() == len(body) else None


def _check_against_fastavro(name: str, body: bytes) -> None:
    """The codec decodes ``body`` as fastavro does, or raises DecodeError: nothing else."""
    codec = _codec(name)
    try:
        decoded = codec.decode(MAGIC + codec.fingerprint + body)
    except DecodeError:
        return
    expected = _fastavro_reads(name, body)
    assert expected is not None, f"avro_binary read bytes fastavro refuses: {body.hex()}"
    record = decoded.to_record() if name == EVENT_SCHEMA else decoded
    if name == "late_event":
        return  # the JSON field is parsed by the codec; the rest is compared below
    assert _same(record, expected)


@pytest.mark.parametrize("name", SCHEMAS)
@DERANDOMIZED
@given(body=st.binary(max_size=120))
def test_random_bytes_decode_as_fastavro_reads_them_or_raise_decode_error(
    name: str, body: bytes
) -> None:
    _check_against_fastavro(name, body)


@pytest.mark.parametrize("name", SCHEMAS)
@DERANDOMIZED
@given(data=st.data())
def test_truncated_or_altered_encodings_decode_as_fastavro_or_raise_decode_error(
    name: str, data: st.DataObject
) -> None:
    body = _fastavro_bytes(name, data.draw(_records(name)))
    cut = data.draw(st.integers(0, len(body)))
    _check_against_fastavro(name, body[:cut])
    if body:
        at = data.draw(st.integers(0, len(body) - 1))
        altered = body[:at] + bytes([data.draw(st.integers(0, 255))]) + body[at + 1 :]
        _check_against_fastavro(name, altered)


@pytest.mark.parametrize("name", SCHEMAS)
@DERANDOMIZED
@given(body=st.binary(max_size=80))
def test_the_decoder_raises_only_its_own_error_on_any_bytes(name: str, body: bytes) -> None:
    program = _program(name)
    with contextlib.suppress(AvroDecodeError):
        decode(program, body, 0)


EVENT_AT_THE_BOUNDS: dict[str, Any] = {
    "event_id": "",
    "occurred_at": LONG_MAX,
    "customer_id": "asiakas-äöå-✓-𝄞",
    "channel": "",
    "contact_id": "c",
    "type": "unlinked",
    "actor": "customer",
    "outcome": "transferred",
    "topic": "",
    "agent_id": None,
    "score": INT_MIN,
    "attributes": {},
    "producer": "p",
    "need_id": None,
    "queue": None,
    "team": "",
    "handling_seconds": float("nan"),
    "identifier": {"kind": "", "value": "☎"},
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"occurred_at": LONG_MIN, "score": INT_MAX},
        {"occurred_at": 0, "score": 0, "handling_seconds": float("inf")},
        {"handling_seconds": float("-inf"), "attributes": {"": "", "ä": "𝄞"}},
        {"handling_seconds": -0.0, "identifier": None, "outcome": None},
        {"handling_seconds": 7},
    ],
)
def test_boundary_values_encode_as_fastavro_writes_them_and_read_back(
    changes: dict[str, Any],
) -> None:
    record = {**EVENT_AT_THE_BOUNDS, **changes}
    schema = _writer_schema(EVENT_SCHEMA)
    expected = _fastavro_bytes(schema, record)
    assert encode(build_program(schema), record) == expected
    assert _same(_decoded(EVENT_SCHEMA, expected), schemaless_reader(BytesIO(expected), schema))


def test_empty_arrays_encode_as_fastavro_writes_them() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "names", "type": {"type": "array", "items": "string"}},
            {"name": "by_key", "type": {"type": "map", "values": "long"}},
        ],
    }
    for record in ({"names": [], "by_key": {}}, {"names": [""], "by_key": {"": LONG_MIN}}):
        assert encode(build_program(schema), record) == _fastavro_bytes(schema, record)


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"score": INT_MAX + 1}, "score"),
        ({"occurred_at": LONG_MAX + 1}, "occurred_at"),
        ({"type": "exploded"}, "type"),
        ({"actor": None}, "actor"),
        ({"score": 1.5}, "score"),
        ({"score": True}, "score"),
        ({"handling_seconds": "1.0"}, "handling_seconds"),
        ({"event_id": b"bytes"}, "event_id"),
        ({"attributes": {"k": 1}}, "attributes"),
        ({"identifier": {"kind": "phone"}}, "identifier"),
    ],
)
def test_a_record_that_does_not_fit_raises_contract_error_naming_the_field(
    changes: dict[str, Any], complaint: str
) -> None:
    record = {**EVENT_AT_THE_BOUNDS, **changes}
    with pytest.raises(ContractError, match=complaint):
        EventCodec()._encode_record(record)


def test_a_missing_field_without_default_is_refused_and_a_nullable_one_is_written_null() -> None:
    codec = EventCodec()
    without_id = {k: v for k, v in EVENT_AT_THE_BOUNDS.items() if k != "event_id"}
    with pytest.raises(ContractError, match="event_id: no value and no default"):
        codec._encode_record(without_id)
    without_team = {k: v for k, v in EVENT_AT_THE_BOUNDS.items() if k != "team"}
    assert codec._encode_record(without_team) == codec._encode_record(
        {**EVENT_AT_THE_BOUNDS, "team": None}
    )


@pytest.mark.parametrize(
    ("body_end", "message"),
    [
        (b"\x13", "type has enum index -10, outside 0..8"),
        (b"\x7f", "type has enum index -64, outside 0..8"),
        (b"\x12", "type has enum index 9, outside 0..8"),
    ],
)
def test_an_enum_index_outside_the_symbols_is_a_decode_error_naming_the_field(
    body_end: bytes, message: str
) -> None:
    # event_id "", occurred_at 0, customer_id "", channel "", contact_id "", then type.
    data = MAGIC + EventCodec().fingerprint + b"\x00\x00\x00\x00\x00" + body_end
    with pytest.raises(DecodeError, match=message) as caught:
        EventCodec().decode(data)
    assert caught.value.field == "type"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x01", "negative string length -1"),
        (b"\x02\xff", "string is not UTF-8"),
        (b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "varint longer than 10 bytes"),
        (b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x03", "varint exceeds 64 bits"),
        (b"\x00", "short read"),
    ],
)
def test_broken_bodies_are_decode_errors_that_say_what_broke(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=f"truncated or corrupt .*{reason}"):
        EventCodec().decode(MAGIC + EventCodec().fingerprint + body)


def test_a_union_branch_index_outside_the_union_is_refused_not_wrapped() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": ["null", "long"]}]}
    for index in (b"\x01", b"\x03", b"\x04"):  # -1, -2, 2
        with pytest.raises(AvroDecodeError, match="union branch index"):
            decode(build_program(schema), index + b"\x02", 0)


@pytest.mark.parametrize(
    "schema_type",
    [
        "float",
        ["string", "long"],
        ["null", "string", "long"],
        {"type": "fixed", "name": "F", "size": 4},
    ],
)
def test_a_type_it_does_not_implement_is_refused_when_the_program_is_built(
    schema_type: Any,
) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": schema_type}]}
    with pytest.raises(UnsupportedSchema):
        build_program(schema)


def test_the_cores_output_records_encode_as_fastavro_writes_them_with_or_without_to_dict() -> None:
    from pipeline.replay import replay_events
    from pipeline.settings_loader import build_settings
    from pipeline.tools.bench import simulated_events

    result = replay_events(simulated_events(3_000, seed=5), build_settings({}), 2, workers=1)
    codecs: dict[str, RecordCodec] = {}
    seen: set[str] = set()
    for record in result.records:
        name = record.OUTPUT_NAME
        codec = codecs.setdefault(name, _record_codec(name))
        as_dict = codec.encode(record.to_dict())
        assert codec.encode_record(record) == as_dict
        wire_dict = record.to_dict()
        if name == "late_event":
            wire_dict["event"] = json.dumps(wire_dict["event"], sort_keys=True, separators=JSON_SEP)
        header = MAGIC + codec.fingerprint
        assert as_dict == header + _fastavro_bytes(name, wire_dict)
        assert _same(codec.decode(as_dict), record.to_dict())
        seen.add(name)
    assert {"contact", "session", "sla_event"} <= seen


@DERANDOMIZED
@given(record=_records(EVENT_SCHEMA))
def test_an_event_encodes_from_its_attributes_as_fastavro_writes_its_record(
    record: dict[str, Any],
) -> None:
    event = event_from_record(record)
    expected = _fastavro_bytes(EVENT_SCHEMA, event.to_record())
    codec = EventCodec()
    assert codec.encode(event) == MAGIC + codec.fingerprint + expected
    assert codec.encode(codec.decode(codec.encode(event))) == codec.encode(event)


def test_an_event_in_a_memoryview_or_bytearray_decodes_as_in_bytes() -> None:
    codec = EventCodec()
    data = codec.encode(event_from_record({**EVENT_AT_THE_BOUNDS, "handling_seconds": 1.5}))
    assert codec.decode(memoryview(data)) == codec.decode(bytearray(data)) == codec.decode(data)


@pytest.mark.parametrize("not_a_record", [None, 5, "contact", ["a"]])
def test_something_that_is_not_a_record_is_refused_with_contract_error(not_a_record: Any) -> None:
    with pytest.raises(ContractError, match="contact: record does not fit"):
        RecordCodec("contact").encode(not_a_record)


def test_a_string_with_a_lone_surrogate_is_refused_naming_the_field() -> None:
    with pytest.raises(ContractError, match="topic: 'utf-8' codec can't encode"):
        EventCodec()._encode_record({**EVENT_AT_THE_BOUNDS, "topic": "\ud800"})


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3) | st.integers(), max_size=2),
)


@pytest.mark.parametrize("name", SCHEMAS)
@DERANDOMIZED
@given(data=st.data())
def test_a_field_of_any_other_value_is_written_as_fastavro_writes_it_or_refused(
    name: str, data: st.DataObject
) -> None:
    record = data.draw(_records(name))
    field = data.draw(st.sampled_from(sorted(record)))
    record[field] = data.draw(ANY_VALUE)
    codec = _record_codec(name)
    if name == "late_event" and field == "event":
        return  # any value becomes a JSON string first
    try:
        written = codec.encode(record)
    except ContractError:
        return
    if name == "late_event":
        record["event"] = json.dumps(record["event"], sort_keys=True, separators=JSON_SEP)
    assert written == MAGIC + codec.fingerprint + _fastavro_bytes(name, record)
