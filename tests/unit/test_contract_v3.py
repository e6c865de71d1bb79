"""Contract version 3 of the interaction event (issue 16): identity events.

v3 lets ``customer_id`` be empty when an identifier is set and adds the event
types ``identified`` and ``unlinked``. Both directions are tested with real bytes:
v1 and v2 producers' bytes (plain fastavro, stored schemas) read in the v3 codec;
v3 bytes read by a consumer on the v2 reader schema. The worker forwards identity
events to its identity processor (tests/unit/test_identity_wiring.py); a stream
handler without that wiring dead-letters them with a clear reason.
"""

from __future__ import annotations

import dataclasses
import json
from io import BytesIO

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pipeline.contract.bench import sample_events
from pipeline.contract.codec import HEADER_LENGTH, MAGIC, EventCodec, appended_null_fields
from pipeline.contract.compat import check_all, check_versions
from pipeline.contract.event import (
    CONTRACT_EVENT_TYPES,
    CUSTOMER_MESSAGE,
    IDENTIFIED,
    NO_CUSTOMER,
    UNKNOWN_TYPE,
    UNLINKED,
    V2_FIELDS,
    InteractionEvent,
    event_from_record,
    needs_identity,
)
from pipeline.contract.jsonform import event_from_json, event_to_json_line, parse_json_line
from pipeline.contract.schemas import load_versions
from pipeline.contract.validate import IDENTITY_NOT_YET, validate
from pipeline.dlq import parse_dead_letter_headers
from pipeline.errors import UnknownSchemaError, ValidationError
from pipeline.settings_loader import build_settings
from pipeline.streaming import RawRecord, StreamHandler

CHANNELS = build_settings().channels
V1, V2, V3 = load_versions("interaction_event")
T0 = 1_772_439_300_250  # 2026-03-02T08:15:00.250Z

#: A phone call before the IVR knows the caller: only the phone number.
ANONYMOUS = InteractionEvent(
    event_id="ph-anon-1",
    occurred_at=T0,
    customer_id=NO_CUSTOMER,
    channel="phone",
    contact_id="call-77",
    type=CUSTOMER_MESSAGE,
    actor="customer",
    producer="phone-acd/8.0",
    identifier_kind="phone",
    identifier_value="+358401234567",
)
#: The IVR identified the caller: the number belongs to cust-000123 from now on.
IDENTIFIED_EVENT = dataclasses.replace(
    ANONYMOUS,
    event_id="ph-ident-1",
    occurred_at=T0 + 40_000,
    customer_id="cust-000123",
    type=IDENTIFIED,
    actor="system",
)
UNLINKED_EVENT = dataclasses.replace(
    IDENTIFIED_EVENT, event_id="ph-unlink-1", occurred_at=T0 + 90_000, type=UNLINKED
)


def _field(schema: dict, name: str) -> dict:
    return next(f for f in schema["fields"] if f["name"] == name)


def _producer_bytes(version, event: InteractionEvent) -> bytes:
    """Single-object bytes a producer on ``version`` writes with plain fastavro."""
    names = {f["name"] for f in version.raw["fields"]}
    record = {k: v for k, v in event.to_record().items() if k in names}
    out = BytesIO()
    out.write(MAGIC + version.fingerprint)
    schemaless_writer(out, parse_schema(version.raw), record)
    return out.getvalue()


def _read_on(reader_version, data: bytes) -> dict:
    """What a consumer with ``reader_version`` as its reader schema reads from v3 bytes."""
    assert data[2:HEADER_LENGTH] == V3.fingerprint
    body = BytesIO(data[HEADER_LENGTH:])
    record = schemaless_reader(body, parse_schema(V3.raw), parse_schema(reader_version.raw))
    record["occurred_at"] = int(record["occurred_at"].timestamp() * 1000)
    return record


# -- the schema and the gate -------------------------------------------------------


def test_v3_is_v2_with_two_event_types_appended_and_new_docs_only():
    assert V3.version == 3
    assert V3.fingerprint.hex() == "27c70ee5d041bf6c"
    assert [f["name"] for f in V3.raw["fields"]] == [f["name"] for f in V2.raw["fields"]]
    v2_types = _field(V2.raw, "type")["type"]
    v3_types = _field(V3.raw, "type")["type"]
    assert v3_types["symbols"] == [*v2_types["symbols"], IDENTIFIED, UNLINKED]
    assert v3_types["default"] == UNKNOWN_TYPE
    # customer_id stays a string: a null would break every v1 and v2 reader.
    assert _field(V3.raw, "customer_id")["type"] == "string"
    assert appended_null_fields(V2.raw, V3.raw) == ()
    assert appended_null_fields(V1.raw, V3.raw) == V2_FIELDS


def test_the_compatibility_gate_passes_v1_v2_and_v3_full_transitive():
    assert check_versions([V1, V2, V3]) == []
    assert check_all()["interaction_event"] == []


def test_a_version_whose_enum_loses_a_symbol_is_not_read_by_the_fast_path():
    narrowed = json.loads(json.dumps(V3.raw))
    _field(narrowed, "type")["type"]["symbols"].remove(UNLINKED)
    assert appended_null_fields(V3.raw, narrowed) is None
    assert appended_null_fields(narrowed, V3.raw) == ()


# -- bytes, both directions ---------------------------------------------------------


def test_the_codec_writes_v3_and_an_anonymous_event_round_trips():
    codec = EventCodec()
    data = codec.encode(ANONYMOUS)
    assert data[:HEADER_LENGTH] == MAGIC + V3.fingerprint
    assert codec.decode(data) == ANONYMOUS
    assert codec.decode(codec.encode(IDENTIFIED_EVENT)) == IDENTIFIED_EVENT
    assert codec.decode(codec.encode(UNLINKED_EVENT)) == UNLINKED_EVENT


@pytest.mark.parametrize("version_number", [1, 2])
def test_v1_and_v2_producer_bytes_decode_in_v3_as_fastavro_resolution_gives(version_number):
    version = (V1, V2)[version_number - 1]
    codec = EventCodec()
    for event in sample_events(300):
        if version_number == 2:
            event = dataclasses.replace(
                event, queue="cards_fi", identifier_kind="chat_session", identifier_value="s-1"
            )
        data = _producer_bytes(version, event)
        resolved = schemaless_reader(
            BytesIO(data[HEADER_LENGTH:]), parse_schema(version.raw), parse_schema(V3.raw)
        )
        resolved["occurred_at"] = int(resolved["occurred_at"].timestamp() * 1000)
        decoded = codec.decode(data)
        assert decoded.to_record() == resolved
        assert decoded == event


def test_v3_bytes_of_an_ordinary_event_read_on_the_v2_reader_schema_give_every_field():
    event = dataclasses.replace(
        sample_events(1)[0], need_id="CRM-1", identifier_kind="phone", identifier_value="+3584"
    )
    assert _read_on(V2, EventCodec().encode(event)) == event.to_record()


def test_v3_identity_events_read_on_the_v2_reader_schema_as_unknown_type_and_empty_customer():
    codec = EventCodec()
    identified = _read_on(V2, codec.encode(IDENTIFIED_EVENT))
    assert identified["type"] == UNKNOWN_TYPE
    assert identified["customer_id"] == "cust-000123"
    anonymous = _read_on(V2, codec.encode(ANONYMOUS))
    assert anonymous["customer_id"] == ""
    assert anonymous["identifier"] == {"kind": "phone", "value": "+358401234567"}
    # A release on v2 dead-letters both in validation: the unknown type here, and
    # the empty customer id by v2's rule that customer_id is a non-empty string.
    with pytest.raises(ValidationError) as caught:
        validate(event_from_record(identified), CHANNELS, identity_events=True)
    assert caught.value.field == "type"


def test_v3_bytes_on_v1_reader_schema_give_the_v1_fields():
    record = _read_on(V1, EventCodec().encode(ANONYMOUS))
    assert list(record) == [f["name"] for f in V1.raw["fields"]]
    assert record["customer_id"] == ""


def test_a_cxstream_that_knows_only_v1_and_v2_refuses_v3_bytes_by_fingerprint():
    with pytest.raises(UnknownSchemaError):
        EventCodec([V1, V2]).decode(EventCodec().encode(ANONYMOUS))


# -- the rules -----------------------------------------------------------------------


def test_an_event_without_a_customer_or_an_identifier_is_refused_naming_customer_id():
    bare = dataclasses.replace(ANONYMOUS, identifier_kind=None, identifier_value=None)
    with pytest.raises(ValidationError) as caught:
        validate(bare, CHANNELS, identity_events=True)
    assert caught.value.field == "customer_id"
    assert "identifier" in str(caught.value)


def test_an_event_with_only_an_identifier_follows_the_contract_for_the_identity_path():
    assert validate(ANONYMOUS, CHANNELS, identity_events=True) is ANONYMOUS
    assert needs_identity(ANONYMOUS)


@pytest.mark.parametrize("identity_event", [IDENTIFIED_EVENT, UNLINKED_EVENT])
def test_identified_and_unlinked_with_customer_and_identifier_follow_the_contract(
    identity_event,
):
    assert validate(identity_event, CHANNELS, identity_events=True) is identity_event
    assert needs_identity(identity_event)


@pytest.mark.parametrize("identity_event", [IDENTIFIED_EVENT, UNLINKED_EVENT])
@pytest.mark.parametrize(
    "changes",
    [
        {"customer_id": NO_CUSTOMER},
        {"identifier_kind": None, "identifier_value": None},
        {"identifier_kind": None},
    ],
)
def test_identified_and_unlinked_need_both_customer_and_identifier(identity_event, changes):
    with pytest.raises(ValidationError) as caught:
        validate(dataclasses.replace(identity_event, **changes), CHANNELS, identity_events=True)
    assert caught.value.field == "type"
    assert "needs both customer_id and identifier" in str(caught.value)


def test_half_an_identifier_without_a_customer_is_refused_naming_the_identifier():
    for half in (
        dataclasses.replace(ANONYMOUS, identifier_kind=None),
        dataclasses.replace(ANONYMOUS, identifier_value=None),
    ):
        with pytest.raises(ValidationError) as caught:
            validate(half, CHANNELS, identity_events=True)
        assert str(caught.value) == "identifier: kind and value must be given together"


def test_an_identified_event_with_an_outcome_is_refused_as_before():
    with pytest.raises(ValidationError) as caught:
        validate(
            dataclasses.replace(IDENTIFIED_EVENT, outcome="resolved"),
            CHANNELS,
            identity_events=True,
        )
    assert caught.value.field == "outcome"


def test_by_default_identity_events_are_refused_as_not_processed_by_this_version_yet():
    with pytest.raises(ValidationError) as caught:
        validate(ANONYMOUS, CHANNELS)
    assert caught.value.field == "customer_id"
    assert str(caught.value) == (
        f"customer_id: absent, the event has only an identifier; {IDENTITY_NOT_YET}"
    )
    for identity_event in (IDENTIFIED_EVENT, UNLINKED_EVENT):
        with pytest.raises(ValidationError) as caught:
            validate(identity_event, CHANNELS)
        assert str(caught.value) == f"type: {identity_event.type}: {IDENTITY_NOT_YET}"


def test_an_ordinary_event_with_a_customer_and_an_identifier_is_accepted_by_default():
    known = dataclasses.replace(ANONYMOUS, customer_id="cust-000123")
    assert validate(known, CHANNELS) is known
    assert not needs_identity(known)


def test_an_unknown_type_message_lists_every_type_a_producer_may_send():
    with pytest.raises(ValidationError) as caught:
        validate(dataclasses.replace(ANONYMOUS, type="merged"), CHANNELS, identity_events=True)
    assert str(caught.value) == f"type: 'merged' is not one of {', '.join(CONTRACT_EVENT_TYPES)}"


# -- JSON -----------------------------------------------------------------------------


def test_json_writes_an_unknown_customer_as_null_and_reads_it_back():
    line = event_to_json_line(ANONYMOUS)
    assert json.loads(line)["customer_id"] is None
    assert parse_json_line(line) == ANONYMOUS


def test_json_may_leave_customer_id_out_only_when_an_identifier_is_given():
    obj = json.loads(event_to_json_line(ANONYMOUS))
    del obj["customer_id"]
    assert event_from_json(obj) == ANONYMOUS
    del obj["identifier"]
    with pytest.raises(ValidationError, match="customer_id: required field is missing"):
        event_from_json(obj)


# -- a stream handler without the identity wiring ------------------------------------


def _record(value: bytes, offset: int, key: bytes) -> RawRecord:
    return RawRecord(
        topic="t.interactions",
        partition=0,
        offset=offset,
        key=key,
        value=value,
        timestamp_ms=T0,
        headers=(),
    )


def test_a_handler_without_the_identity_wiring_dead_letters_identity_events_and_goes_on():
    settings = build_settings({"kafka": {"topic_prefix": "t"}, "worker": {"clock": "stream"}})
    handler = StreamHandler(settings)
    codec = EventCodec()
    known = dataclasses.replace(ANONYMOUS, event_id="ph-known-1", customer_id="cust-000123")
    handler.handle(_record(codec.encode(ANONYMOUS), 0, b"id:phone:+358401234567"))
    handler.handle(_record(codec.encode(IDENTIFIED_EVENT), 1, b"cust-000123"))
    handler.handle(_record(codec.encode(known), 2, b"cust-000123"))
    drained = handler.drain()
    letters = [parse_dead_letter_headers(o.headers) for o in drained.outgoing if o.topic == "t.dlq"]
    assert [(h["cx.dlq.stage"], h["cx.dlq.source.offset"]) for h in letters] == [
        ("validate", "0"),
        ("validate", "1"),
    ]
    assert all(IDENTITY_NOT_YET in h["cx.dlq.error.message"] for h in letters)
    assert [o for o in drained.outgoing if o.topic == "t.interactions"] == []  # no re-key
    assert handler.processors[0].stats.events == 1  # the known customer's event only
