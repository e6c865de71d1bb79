from dataclasses import replace

import pytest

from pipeline.contract.event import InteractionEvent
from pipeline.contract.jsonform import (
    event_from_json,
    event_to_json_line,
    read_events,
    write_events,
)
from pipeline.errors import DecodeError, ValidationError

EVENT = InteractionEvent(
    event_id="e-1",
    occurred_at=1_772_439_300_250,
    customer_id="cust-1",
    channel="chat",
    contact_id="chat-1",
    type="contact_ended",
    actor="bot",
    outcome="unresolved",
    topic="card_lost",
    attributes={"queue": "cards"},
    producer="chat-gateway/2.3",
)

MINIMAL = {
    "event_id": "e-2",
    "occurred_at": "2026-03-02T10:15:00+02:00",
    "customer_id": "cust-1",
    "channel": "phone",
    "contact_id": "ph-1",
    "type": "contact_started",
    "actor": "customer",
}


def test_json_line_has_schema_fields_and_iso_time_with_offset():
    assert event_to_json_line(EVENT) == (
        '{"event_id": "e-1", "occurred_at": "2026-03-02T08:15:00.250+00:00", '
        '"customer_id": "cust-1", "channel": "chat", "contact_id": "chat-1", '
        '"type": "contact_ended", "actor": "bot", "outcome": "unresolved", '
        '"topic": "card_lost", "agent_id": null, "score": null, '
        '"attributes": {"queue": "cards"}, "producer": "chat-gateway/2.3"}'
    )


def test_minimal_object_fills_optional_fields_and_converts_the_offset():
    assert event_from_json(MINIMAL) == InteractionEvent(
        event_id="e-2",
        occurred_at=1_772_439_300_000,
        customer_id="cust-1",
        channel="phone",
        contact_id="ph-1",
        type="contact_started",
        actor="customer",
        producer="unknown",
    )


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"customer_id": None}, "customer_id", "customer_id: required field is missing"),
        ({"type": 3}, "type", "type: expected a string, got int 3"),
        ({"score": "9"}, "score", "score: expected an integer or null, got str '9'"),
        ({"score": True}, "score", "score: expected an integer or null, got bool True"),
        (
            {"occurred_at": 1772439300000},
            "occurred_at",
            "occurred_at: expected an ISO-8601 string with offset, got int 1772439300000",
        ),
        (
            {"occurred_at": "2026-03-02T10:15:00"},
            "occurred_at",
            "occurred_at: '2026-03-02T10:15:00' has no UTC offset; "
            "write e.g. 2026-03-02T08:15:00+02:00",
        ),
        (
            {"attributes": {"n": 1}},
            "attributes",
            "attributes: expected an object of strings, got dict {'n': 1}",
        ),
    ],
)
def test_bad_field_is_a_validation_error_naming_it(changes, field, message):
    with pytest.raises(ValidationError) as caught:
        event_from_json({**MINIMAL, **changes})
    assert (caught.value.field, str(caught.value)) == (field, message)


def test_missing_field_is_named():
    obj = dict(MINIMAL)
    del obj["occurred_at"]
    with pytest.raises(ValidationError, match="occurred_at: required field is missing"):
        event_from_json(obj)


def test_unknown_field_is_refused_so_typos_surface():
    with pytest.raises(ValidationError) as caught:
        event_from_json({**MINIMAL, "outcom": "resolved"})
    assert caught.value.field == "outcom"


def test_written_file_reads_back_event_for_event(tmp_path):
    path = tmp_path / "events.jsonl"
    second = replace(EVENT, event_id="e-3", outcome=None)
    assert write_events(path, [EVENT, second]) == 2
    read = [(number, event) for number, event, _ in read_events(path)]
    assert read == [(1, EVENT), (2, second)]


def test_bad_lines_yield_their_errors_and_the_iteration_goes_on(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = event_to_json_line(EVENT)
    path.write_text(f"{good}\n{{not json\n\n[1, 2]\n{good}\n", encoding="utf-8")
    results = list(read_events(path))
    assert [(number, type(result).__name__, raw) for number, result, raw in results] == [
        (1, "InteractionEvent", good),
        (2, "DecodeError", "{not json"),
        (4, "ValidationError", "[1, 2]"),
        (5, "InteractionEvent", good),
    ]
    assert isinstance(results[1][1], DecodeError)
