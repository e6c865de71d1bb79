"""Contract version 2 of the interaction event: both directions with real bytes.

A v1 producer's bytes (written by fastavro with the stored v1 schema, not by our
codec) must decode in the v2 reader; v2 bytes must read in a consumer still on v1.
"""

import dataclasses
import json
import math
import shutil
from io import BytesIO

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pipeline.contract.bench import sample_events
from pipeline.contract.codec import HEADER_LENGTH, MAGIC, EventCodec, appended_null_fields
from pipeline.contract.compat import check_all, check_versions, compat_command
from pipeline.contract.event import V2_FIELDS, InteractionEvent
from pipeline.contract.jsonform import event_from_json, event_to_json_line, parse_json_line
from pipeline.contract.schemas import SCHEMAS_DIR, load_versions
from pipeline.contract.validate import validate
from pipeline.errors import ValidationError
from pipeline.settings_loader import build_settings

CHANNELS = build_settings().channels
V1, V2, *_LATER = load_versions("interaction_event")
#: What a cxstream release on contract v2 wrote (the codec writes the newest version).
V2_CODEC = EventCodec([V1, V2])

V1_EVENT = InteractionEvent(
    event_id="0f8fad5b-d9cb-469f-a165-70867728950e",
    occurred_at=1_772_439_300_250,
    customer_id="cust-000123",
    channel="phone",
    contact_id="ph-000123-1",
    type="contact_ended",
    actor="agent",
    outcome="resolved",
    topic="card_lost",
    agent_id="agent-42",
    attributes={"vendor": "acd-9"},
    producer="phone-acd/7.1",
)
V2_EVENT = dataclasses.replace(
    V1_EVENT,
    need_id="CRM-2026-000981",
    queue="cards_fi",
    team="cards_helsinki",
    handling_seconds=412.5,
    identifier_kind="phone",
    identifier_value="+358401234567",
)
V1_FIELD_NAMES = [f["name"] for f in V1.raw["fields"]]


def _v1_record(event: InteractionEvent) -> dict:
    """What a producer on v1 builds: only the v1 fields."""
    return {name: value for name, value in event.to_record().items() if name in V1_FIELD_NAMES}


def _v1_producer_bytes(event: InteractionEvent) -> bytes:
    """Single-object bytes a v1 producer writes with plain fastavro and the v1 schema."""
    out = BytesIO()
    out.write(MAGIC + V1.fingerprint)
    schemaless_writer(out, parse_schema(V1.raw), _v1_record(event))
    return out.getvalue()


def test_the_stored_versions_are_v1_then_v2_with_the_fields_appended_after_producer():
    assert (V1.version, V2.version) == (1, 2)
    assert V1.fingerprint.hex() == "ece10f58c658aa42"
    assert V2.fingerprint.hex() == "a2ef84d228017945"
    assert [f["name"] for f in V2.raw["fields"]] == [*V1_FIELD_NAMES, *V2_FIELDS]
    assert all(f["default"] is None for f in V2.raw["fields"][len(V1_FIELD_NAMES) :])


def test_a_codec_that_knows_v1_and_v2_writes_v2():
    data = V2_CODEC.encode(V2_EVENT)
    assert data[:HEADER_LENGTH] == MAGIC + V2.fingerprint
    assert EventCodec().decode(data) == V2_EVENT


def test_v2_event_with_every_new_field_round_trips_through_the_codec():
    codec = EventCodec()
    decoded = codec.decode(codec.encode(V2_EVENT))
    assert decoded == V2_EVENT
    assert (decoded.identifier_kind, decoded.identifier_value) == ("phone", "+358401234567")
    assert decoded.handling_seconds == 412.5


def test_v2_event_without_new_fields_decodes_with_them_none():
    codec = EventCodec()
    assert codec.decode(codec.encode(V1_EVENT)) == V1_EVENT


def test_v1_producer_bytes_are_decoded_by_the_v2_reader_with_the_new_fields_none():
    data = _v1_producer_bytes(V1_EVENT)
    assert data[2:HEADER_LENGTH] == V1.fingerprint
    decoded = EventCodec().decode(data)
    assert decoded == V1_EVENT
    assert [getattr(decoded, name) for name in ("need_id", "queue", "team")] == [None] * 3
    assert (decoded.handling_seconds, decoded.identifier_kind, decoded.identifier_value) == (
        None,
        None,
        None,
    )


def test_v1_producer_bytes_equal_what_the_codec_pinned_to_v1_writes():
    assert _v1_producer_bytes(V1_EVENT) == EventCodec([V1]).encode(V1_EVENT)


def test_v2_bytes_read_by_a_consumer_on_the_v1_reader_schema_give_the_v1_fields():
    """A consumer still on v1 resolves the writer's v2 into its v1 reader schema."""
    data = V2_CODEC.encode(V2_EVENT)
    assert data[2:HEADER_LENGTH] == V2.fingerprint
    body = BytesIO(data[HEADER_LENGTH:])
    record = schemaless_reader(body, parse_schema(V2.raw), parse_schema(V1.raw))
    record["occurred_at"] = int(record["occurred_at"].timestamp() * 1000)
    assert record == _v1_record(V2_EVENT)
    assert list(record) == V1_FIELD_NAMES


def test_v2_bytes_read_field_by_field_with_the_v1_schema_give_the_v1_fields_then_the_rest():
    """A reader that knows only v1 and stops after its fields (the Kafka Streams peer
    does) still reads every v1 field right, because v2 only appends."""
    data = V2_CODEC.encode(V2_EVENT)
    body = BytesIO(data[HEADER_LENGTH:])
    record = schemaless_reader(body, parse_schema(V1.raw), None)
    record["occurred_at"] = int(record["occurred_at"].timestamp() * 1000)
    assert record == _v1_record(V2_EVENT)
    assert body.tell() < len(data) - HEADER_LENGTH  # the v2 fields follow


def test_the_compatibility_gate_passes_v1_to_v2_full_transitive():
    assert check_versions([V1, V2]) == []
    assert check_all()["interaction_event"] == []


def _store_next(tmp_path, change) -> object:
    """A copy of the stored versions plus a next version changed by ``change``."""
    folder = tmp_path / "interaction_event"
    shutil.copytree(SCHEMAS_DIR / "interaction_event", folder)
    newest = load_versions("interaction_event")[-1]
    following = json.loads(json.dumps(newest.raw))
    change(following)
    (folder / f"v{newest.version + 1}.avsc").write_text(json.dumps(following), encoding="utf-8")
    return tmp_path


def _field(schema: dict, name: str) -> dict:
    return next(f for f in schema["fields"] if f["name"] == name)


def test_the_gate_rejects_a_next_version_that_turns_handling_seconds_into_a_string(
    tmp_path, capsys
):
    def change(schema: dict) -> None:
        _field(schema, "handling_seconds")["type"] = ["null", "string"]

    schemas_dir = _store_next(tmp_path, change)
    problems = check_all(schemas_dir)["interaction_event"]
    assert problems
    assert all("handling_seconds" in problem for problem in problems)
    assert any("v2" in problem and "v4" in problem for problem in problems)
    assert compat_command(schemas_dir) == 1
    assert "interaction_event" in capsys.readouterr().out


def test_the_gate_rejects_a_next_version_that_makes_need_id_required(tmp_path):
    def change(schema: dict) -> None:
        need = _field(schema, "need_id")
        need["type"] = "string"
        del need["default"]

    problems = check_all(_store_next(tmp_path, change))["interaction_event"]
    assert any("need_id" in problem and "no default" in problem for problem in problems)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"need_id": ""}, "need_id"),
        ({"need_id": "   "}, "need_id"),
        ({"need_id": "c" * 201}, "need_id"),
        ({"need_id": "CRM\x001"}, "need_id"),
        ({"queue": "q" * 101}, "queue"),
        ({"queue": "cards\nfi"}, "queue"),
        ({"team": ""}, "team"),
        ({"team": "team\x1b[31m"}, "team"),
        ({"handling_seconds": -0.5}, "handling_seconds"),
        ({"handling_seconds": 604_800.001}, "handling_seconds"),
        ({"handling_seconds": math.nan}, "handling_seconds"),
        ({"handling_seconds": math.inf}, "handling_seconds"),
        ({"handling_seconds": True}, "handling_seconds"),
        ({"handling_seconds": "412"}, "handling_seconds"),
        ({"type": "agent_reply", "outcome": None, "handling_seconds": 10.0}, "handling_seconds"),
        ({"identifier_kind": "phone", "identifier_value": None}, "identifier"),
        ({"identifier_kind": None, "identifier_value": "+358401234567"}, "identifier"),
        ({"identifier_kind": ""}, "identifier.kind"),
        ({"identifier_kind": "k" * 101}, "identifier.kind"),
        ({"identifier_value": "+358\t401"}, "identifier.value"),
        ({"identifier_value": "v" * 201}, "identifier.value"),
    ],
)
def test_validation_rejects_a_bad_v2_field_naming_it(changes, field):
    with pytest.raises(ValidationError) as caught:
        validate(dataclasses.replace(V2_EVENT, **changes), CHANNELS)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_validation_accepts_v2_fields_at_their_limits():
    at_limits = dataclasses.replace(
        V2_EVENT,
        need_id="c" * 200,
        queue="q" * 100,
        team="t" * 100,
        handling_seconds=604_800.0,
        identifier_kind="k" * 100,
        identifier_value="v" * 200,
    )
    assert validate(at_limits, CHANNELS) is at_limits
    zero = dataclasses.replace(V2_EVENT, handling_seconds=0)
    assert validate(zero, CHANNELS) is zero


def test_validation_message_for_handling_time_in_milliseconds_says_so():
    with pytest.raises(ValidationError) as caught:
        validate(dataclasses.replace(V2_EVENT, handling_seconds=412_500_000.0), CHANNELS)
    assert str(caught.value) == (
        "handling_seconds: 412500000.0 is outside 0..604800 (7 days); "
        "is it in milliseconds instead of seconds?"
    )


def test_json_form_round_trips_the_v2_fields():
    line = event_to_json_line(V2_EVENT)
    obj = json.loads(line)
    assert {name: obj[name] for name in V2_FIELDS} == {
        "need_id": "CRM-2026-000981",
        "queue": "cards_fi",
        "team": "cards_helsinki",
        "handling_seconds": 412.5,
        "identifier": {"kind": "phone", "value": "+358401234567"},
    }
    assert parse_json_line(line) == V2_EVENT


def test_json_form_of_an_event_without_v2_fields_is_the_v1_json():
    obj = json.loads(event_to_json_line(V1_EVENT))
    assert list(obj) == V1_FIELD_NAMES
    assert parse_json_line(event_to_json_line(V1_EVENT)) == V1_EVENT


def test_json_handling_seconds_as_an_integer_reads_as_a_float():
    obj = {**json.loads(event_to_json_line(V1_EVENT)), "handling_seconds": 300}
    event = event_from_json(obj)
    assert event.handling_seconds == 300.0
    assert isinstance(event.handling_seconds, float)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("handling_seconds", "300"),
        ("handling_seconds", True),
        ("identifier", "+358401234567"),
        ("identifier", {"kind": "phone"}),
        ("identifier", {"kind": "phone", "value": 358401234567}),
        ("identifier", {"kind": "phone", "value": "+358", "extra": "x"}),
        ("need_id", 981),
        ("queue", ["cards"]),
        ("team", {"name": "cards"}),
    ],
)
def test_json_form_refuses_a_v2_field_of_the_wrong_shape_naming_it(name, value):
    obj = {**json.loads(event_to_json_line(V1_EVENT)), name: value}
    with pytest.raises(ValidationError) as caught:
        event_from_json(obj)
    assert caught.value.field == name


def test_v1_is_a_prefix_of_v2_whose_appended_fields_all_default_to_null():
    assert appended_null_fields(V1.raw, V2.raw) == V2_FIELDS
    assert appended_null_fields(V2.raw, V2.raw) == ()


def test_a_version_that_differs_before_its_end_is_not_a_prefix():
    without_topic = json.loads(json.dumps(V1.raw))
    without_topic["fields"] = [f for f in without_topic["fields"] if f["name"] != "topic"]
    assert appended_null_fields(without_topic, V2.raw) is None
    retyped = json.loads(json.dumps(V1.raw))
    _field(retyped, "score")["type"] = ["null", "long"]
    assert appended_null_fields(retyped, V2.raw) is None


def test_an_appended_field_with_a_non_null_default_is_not_a_null_prefix():
    v3 = json.loads(json.dumps(V2.raw))
    v3["fields"].append(
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []}
    )
    assert appended_null_fields(V1.raw, v3) is None


def test_only_docs_may_differ_between_a_version_and_the_prefix_of_the_next():
    redocumented = json.loads(json.dumps(V1.raw))
    _field(redocumented, "topic")["doc"] = "rewritten"
    assert appended_null_fields(redocumented, V2.raw) == V2_FIELDS


def test_v1_bytes_decode_to_what_fastavro_schema_resolution_gives():
    """The v1 fast path (read v1, append nulls) equals Avro resolution into v2."""
    v1_writer = EventCodec([V1])
    codec = EventCodec()
    for event in sample_events(600):
        data = v1_writer.encode(event)
        resolved = schemaless_reader(
            BytesIO(data[HEADER_LENGTH:]), parse_schema(V1.raw), parse_schema(V2.raw)
        )
        decoded = codec.decode(data)
        assert decoded.to_record() == {
            **resolved,
            "occurred_at": int(resolved["occurred_at"].timestamp() * 1000),
        }
        assert decoded == event
