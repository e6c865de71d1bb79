import json
from dataclasses import fields, replace
from pathlib import Path

import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from pipeline.contract.codec import MAGIC, EventCodec, RecordCodec
from pipeline.contract.event import InteractionEvent
from pipeline.contract.schemas import (
    SCHEMAS_DIR,
    crc64_avro,
    current,
    load_version_file,
    load_versions,
    schema_names,
)
from pipeline.core.records import (
    ContactSummary,
    JourneySignal,
    LateEvent,
    SessionRecord,
    SlaEvent,
)
from pipeline.errors import ContractError, DecodeError, UnknownSchemaError

EVENT = InteractionEvent(
    event_id="0f8fad5b-d9cb-469f-a165-70867728950e",
    occurred_at=1_772_439_300_250,
    customer_id="cust-000123",
    channel="chat",
    contact_id="chat-000123-1",
    type="contact_ended",
    actor="bot",
    outcome="unresolved",
    topic="card_lost",
    agent_id="bot-7",
    attributes={"queue": "cards"},
    producer="chat-gateway/2.3",
)


def _event_like(**changes: object) -> InteractionEvent:
    """EVENT with some fields changed."""
    return replace(EVENT, **changes)  # type: ignore[arg-type]  # test helper, any field


@pytest.fixture
def codec() -> EventCodec:
    """An event codec over the stored schema versions."""
    return EventCodec()


def test_crc64_avro_matches_the_spec_test_vectors():
    # Values from the Avro specification's fingerprint test data.
    assert crc64_avro(b"") == 0xC15D213AA4D7A795
    assert crc64_avro(b'"null"') == 7195948357588979594
    assert crc64_avro(b'"int"') == 8247732601305521295


def test_stored_fingerprint_equals_fastavro_fingerprint_of_canonical_form():
    version = current("interaction_event")
    canonical = to_parsing_canonical_form(version.raw)
    assert version.fingerprint.hex() == fingerprint(canonical, "CRC-64-AVRO")


def test_every_output_record_has_a_schema_with_the_dataclass_fields():
    for record_type in (SessionRecord, ContactSummary, SlaEvent, JourneySignal, LateEvent):
        schema = current(record_type.OUTPUT_NAME).raw
        names = [f["name"] for f in schema["fields"]]
        assert names == [f.name for f in fields(record_type)], record_type.OUTPUT_NAME


def test_every_schema_field_has_a_doc():
    for name in schema_names(SCHEMAS_DIR):
        for version in load_versions(name):
            undocumented = [f["name"] for f in version.raw["fields"] if not f.get("doc")]
            assert undocumented == [], f"{name} v{version.version}"


def test_encoded_event_starts_with_marker_and_fingerprint(codec):
    data = codec.encode(EVENT)
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:10] == current("interaction_event").fingerprint


def test_event_round_trips_through_the_codec(codec):
    assert codec.decode(codec.encode(EVENT)) == EVENT


def test_feedback_event_with_score_and_empty_attributes_round_trips(codec):
    event = InteractionEvent(
        event_id="e-2",
        occurred_at=946_684_800_000,
        customer_id="c",
        channel="web_message",
        contact_id="k",
        type="feedback",
        actor="customer",
        score=0,
        producer="survey/1",
    )
    assert codec.decode(codec.encode(event)) == event


def test_garbage_without_marker_is_a_decode_error(codec):
    with pytest.raises(DecodeError, match="not Avro single-object encoded"):
        codec.decode(b'{"event_id": "json, not avro"}')


def test_bytes_shorter_than_the_header_are_a_decode_error(codec):
    with pytest.raises(DecodeError, match="c301"):
        codec.decode(b"\xc3\x01\x00")


def test_unknown_fingerprint_is_named_in_the_error(codec):
    data = MAGIC + bytes.fromhex("0102030405060708") + b"\x00"
    with pytest.raises(UnknownSchemaError, match="0102030405060708"):
        codec.decode(data)


def test_truncated_body_is_a_decode_error(codec):
    data = codec.encode(EVENT)
    with pytest.raises(DecodeError, match="truncated or corrupt"):
        codec.decode(data[:-5])


def test_trailing_bytes_after_the_record_are_a_decode_error(codec):
    data = codec.encode(EVENT)
    with pytest.raises(DecodeError, match="2 unexpected bytes"):
        codec.decode(data + b"\x00\x00")


def test_every_truncation_of_an_event_is_a_decode_error_not_a_library_error(codec):
    data = codec.encode(EVENT)
    for length in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:length])


def test_event_with_a_type_outside_the_enum_cannot_be_encoded(codec):
    bad = _event_like(type="video_call_started")
    with pytest.raises(ContractError, match="interaction_event"):
        codec.encode(bad)


# -- enum indexes, written by hand ------------------------------------------------
# The Avro spec encodes an enum as the zero-based index of its symbol (an int:
# zig-zag varint). fastavro looks the symbol up with a Python list subscript, so a
# negative index wraps around to a symbol counted from the end; these bytes are
# built by hand to prove the codec refuses that instead of decoding another value.


def _avro_long(value: int) -> bytes:
    """Avro's zig-zag varint encoding of an int or long."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def _avro_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _avro_long(len(data)) + data


def _hand_built_event(
    *,
    type_index: int = 4,
    actor_index: int = 2,
    outcome_index: int = 1,
    fingerprint: bytes | None = None,
    with_attributes: bool = True,
    v2_fields: bool = True,
) -> bytes:
    """EVENT's single-object bytes, field by field, with the given enum indexes.

    ``with_attributes=False`` and an older ``fingerprint`` write a version that lacks
    the field; ``v2_fields=False`` stops after ``producer``, as stored v1 does.
    """
    attributes = _avro_long(1) + _avro_string("queue") + _avro_string("cards") + _avro_long(0)
    body = b"".join(
        (
            _avro_string(EVENT.event_id),
            _avro_long(EVENT.occurred_at),
            _avro_string(EVENT.customer_id),
            _avro_string(EVENT.channel),
            _avro_string(EVENT.contact_id),
            _avro_long(type_index),
            _avro_long(actor_index),
            _avro_long(1) + _avro_long(outcome_index),  # union branch 1: the Outcome enum
            _avro_long(1) + _avro_string("card_lost"),
            _avro_long(1) + _avro_string("bot-7"),
            _avro_long(0),  # score: union branch 0, null
            attributes if with_attributes else b"",
            _avro_string(EVENT.producer),
            # need_id, queue, team, handling_seconds, identifier: union branch 0, null
            _avro_long(0) * 5 if v2_fields else b"",
        )
    )
    return MAGIC + (fingerprint or current("interaction_event").fingerprint) + body


def test_zig_zag_helper_matches_the_avro_spec_examples():
    assert [_avro_long(n) for n in (0, -1, 1, -2, 2, -64, 64)] == [
        b"\x00",
        b"\x01",
        b"\x02",
        b"\x03",
        b"\x04",
        b"\x7f",
        b"\x80\x01",
    ]


def test_hand_built_bytes_with_valid_indexes_equal_the_codec_output(codec):
    assert _hand_built_event() == codec.encode(EVENT)
    assert codec.decode(_hand_built_event()) == EVENT


@pytest.mark.parametrize(
    ("field", "symbols", "index"),
    [
        ("type", 9, -1),
        ("type", 9, 9),
        ("actor", 4, -1),
        ("actor", 4, -4),
        ("actor", 4, 4),
        ("outcome", 4, -1),
        ("outcome", 4, 4),
    ],
)
def test_enum_index_outside_the_symbols_is_a_decode_error_naming_the_field(
    codec, field, symbols, index
):
    data = _hand_built_event(**{f"{field}_index": index})
    with pytest.raises(DecodeError) as caught:
        codec.decode(data)
    assert caught.value.stage == "decode"
    assert caught.value.field == field
    assert str(caught.value) == (
        f"interaction_event: {field} has enum index {index}, outside 0..{symbols - 1}"
    )


def test_negative_enum_index_in_an_older_writer_version_is_a_decode_error(tmp_path):
    v1 = {
        "type": "record",
        "name": "InteractionEvent",
        "namespace": "fi.bank.cxstream",
        "fields": [
            f for f in current("interaction_event").raw["fields"] if f["name"] != "attributes"
        ],
    }
    old = load_version_file(_write_version(tmp_path, 1, v1), "interaction_event", 1)
    new = load_version_file(
        _write_version(tmp_path, 2, current("interaction_event").raw), "interaction_event", 2
    )
    reader = EventCodec([old, new])
    valid = _hand_built_event(fingerprint=old.fingerprint, with_attributes=False)
    assert valid == EventCodec([old]).encode(_event_like(attributes={}))
    assert reader.decode(valid) == _event_like(attributes={})
    corrupt = _hand_built_event(fingerprint=old.fingerprint, with_attributes=False, actor_index=-1)
    with pytest.raises(DecodeError, match=r"actor has enum index -1, outside 0\.\.3"):
        reader.decode(corrupt)


def _write_version(folder: Path, version: int, schema: dict) -> Path:
    path = folder / f"v{version}.avsc"
    path.write_text(json.dumps(schema), encoding="utf-8")
    return path


def test_old_version_is_read_into_the_current_schema(tmp_path):
    """v1 data read by a v2 reader: the added field takes its default, symbols resolve."""
    v1 = {
        "type": "record",
        "name": "InteractionEvent",
        "namespace": "fi.bank.cxstream",
        "fields": [
            f for f in current("interaction_event").raw["fields"] if f["name"] != "attributes"
        ],
    }
    v2 = current("interaction_event").raw
    old = load_version_file(_write_version(tmp_path, 1, v1), "interaction_event", 1)
    new = load_version_file(_write_version(tmp_path, 2, v2), "interaction_event", 2)
    old_writer = EventCodec([old])
    event = _event_like(attributes={})
    data = old_writer.encode(event)
    assert data[2:10] == old.fingerprint
    assert EventCodec([old, new]).decode(data) == event


def test_newer_enum_symbol_reads_as_the_enum_default(tmp_path):
    raw = json.loads(json.dumps(current("interaction_event").raw))
    type_field = next(f for f in raw["fields"] if f["name"] == "type")
    type_field["type"]["symbols"].append("video_call_started")
    newer = load_version_file(_write_version(tmp_path, 2, raw), "interaction_event", 2)
    data = EventCodec([newer]).encode(_event_like(type="video_call_started"))
    # The reader's current (last) version is v1: it knows the newer writer by
    # fingerprint, and the symbol v1 lacks falls back to the enum default.
    reader = EventCodec([newer, current("interaction_event")])
    assert reader.decode(data).type == "unknown"


def _records():
    return {
        "session": SessionRecord(
            session_id="s-1",
            customer_id="c-1",
            status="final",
            started_at=1_772_439_300_000,
            ended_at=1_772_439_900_000,
            channel_path=["chat", "phone"],
            contacts=2,
            events=9,
            channel_switches=1,
            first_contact_resolved=False,
            resolved_at_end=True,
            switch_failures=1,
            sla_breaches=0,
            nps_score=7,
            contact_ids=["k-1", "k-2"],
            version=3,
        ),
        "contact": ContactSummary(
            contact_id="k-1",
            customer_id="c-1",
            channel="chat",
            session_id=None,
            started_at=1_772_439_300_000,
            ended_at=None,
            outcome="unresolved",
            topic=None,
            first_reply_seconds=12.5,
            first_reply_business_seconds=None,
            breached=False,
            events=4,
        ),
        "sla_event": SlaEvent(
            sla_event_id="k-1:chat_first_reply:first_reply:0:breach",
            kind="breach",
            customer_id="c-1",
            contact_id="k-1",
            channel="chat",
            policy="chat_first_reply",
            metric="first_reply",
            clock_started_at=1_772_439_300_000,
            deadline=1_772_439_360_000,
            target_seconds=60.0,
            calendar="24x7",
            fired_at=1_772_439_360_000,
        ),
        "journey_signal": JourneySignal(
            signal_id="sig-1",
            kind="switch_failure",
            customer_id="c-1",
            from_contact_id="k-1",
            from_channel="chat",
            from_outcome="unresolved",
            to_contact_id="k-2",
            to_channel="phone",
            gap_seconds=300.0,
            topic="card_lost",
            occurred_at=1_772_439_600_000,
        ),
        "late_event": LateEvent(
            event_id="e-9",
            customer_id="c-1",
            occurred_at=1_772_439_300_000,
            clock_at=1_772_449_300_000,
            reason="session_closed",
            event=EVENT.to_json_dict(),
        ),
    }


@pytest.mark.parametrize(
    "name", ["session", "contact", "sla_event", "journey_signal", "late_event"]
)
def test_output_record_round_trips_through_its_record_codec(name):
    record = _records()[name]
    codec = RecordCodec(name)
    assert codec.decode(codec.encode(record.to_dict())) == record.to_dict()


def test_bench_sample_events_are_valid_and_round_trip(codec):
    from pipeline.contract.bench import sample_events
    from pipeline.contract.validate import validate
    from pipeline.settings_loader import build_settings

    channels = build_settings().channels
    events = sample_events(60)
    assert [codec.decode(codec.encode(validate(e, channels))) for e in events] == events


def test_bench_codec_reports_encode_and_decode_rates():
    from pipeline.contract.bench import bench_codec

    result = bench_codec(600, quiet=True)
    assert sorted(result) == [
        "contact_encode_per_cpu_s",
        "decode_events_per_cpu_s",
        "decode_events_per_s",
        "encode_events_per_cpu_s",
        "encode_events_per_s",
        "events",
    ]
    assert result["decode_events_per_s"] > 0
