"""The streaming glue, driven with plain records (no broker)."""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

import pytest

from pipeline.contract.codec import EventCodec, RecordCodec
from pipeline.contract.event import (
    AGENT,
    AGENT_REPLY,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER,
    CUSTOMER_MESSAGE,
    FEEDBACK,
    RESOLVED,
    InteractionEvent,
)
from pipeline.core.partitioning import partition_for
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import JourneySignal, LateEvent, OutputRecord
from pipeline.dlq import parse_dead_letter_headers, record_size
from pipeline.settings_loader import build_settings
from pipeline.stream_state import (
    COMPRESSED_STATE,
    LZ4_STATE,
    clock_key,
    decode_position,
    decode_table_state,
    encode_table_state,
    record_crc,
)
from pipeline.streaming import CONTROL_HEADER, END_OF_INPUT, RawRecord, StreamHandler

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
MINUTE = 60_000
SETTINGS = build_settings({"kafka": {"topic_prefix": "t"}, "worker": {"clock": "stream"}})
#: Control records honoured: a backfill's or a replay-through-Kafka's worker.
CONTROL = build_settings(
    {"kafka": {"topic_prefix": "t"}, "worker": {"clock": "stream", "control_records": True}}
)
#: The smallest record cap the settings allow, so tests need no megabyte values.
SMALL_CAP = build_settings(
    {
        "kafka": {"topic_prefix": "t"},
        "worker": {"clock": "stream"},
        "limits": {"max_record_bytes": 10_000},
    }
)
CODEC = EventCodec()
# The partition Kafka's default partitioner gives customer c-1's key.
PARTITION = partition_for("c-1", SETTINGS.kafka.input_partitions)


def event(n: int, at: int, type_: str, actor: str = CUSTOMER, **fields) -> InteractionEvent:
    return InteractionEvent(
        event_id=f"e{n}",
        occurred_at=at,
        customer_id="c-1",
        channel="chat",
        contact_id="k-1",
        type=type_,
        actor=actor,
        **fields,
    )


def record(value: bytes | None, *, offset: int = 0, key: bytes | None = b"c-1", headers=()):
    return RawRecord(
        topic="t.interactions",
        partition=PARTITION,
        offset=offset,
        key=key,
        value=value,
        timestamp_ms=T0,
        headers=headers,
    )


def chat_contact() -> list[InteractionEvent]:
    return [
        event(1, T0, CONTACT_STARTED),
        event(2, T0 + 1000, CUSTOMER_MESSAGE),
        event(3, T0 + 20_000, AGENT_REPLY, actor=AGENT),
        event(4, T0 + 5 * MINUTE, CONTACT_ENDED, actor=AGENT, outcome=RESOLVED),
    ]


def test_undecodable_bytes_become_one_dead_letter_with_the_reason_and_original_bytes() -> None:
    handler = StreamHandler(SETTINGS)
    handler.handle(record(b"\x00garbage", offset=41))
    drained = handler.drain()
    assert [out.topic for out in drained.outgoing] == ["t.dlq"]
    letter = drained.outgoing[0]
    assert letter.value == b"\x00garbage"
    assert letter.key == f"t.interactions/{PARTITION}/41".encode()
    headers = parse_dead_letter_headers(letter.headers)
    assert headers["cx.dlq.stage"] == "decode"
    assert headers["cx.dlq.source.offset"] == "41"
    assert headers["cx.dlq.source.partition"] == str(PARTITION)


def test_an_event_for_an_unknown_channel_is_a_validation_dead_letter() -> None:
    handler = StreamHandler(SETTINGS)
    bad = InteractionEvent(
        event_id="e1",
        occurred_at=T0,
        customer_id="c-1",
        channel="carrier_pigeon",
        contact_id="k",
        type=CONTACT_STARTED,
        actor=CUSTOMER,
    )
    handler.handle(record(CODEC.encode(bad)))
    letter = handler.drain().outgoing[0]
    headers = parse_dead_letter_headers(letter.headers)
    assert (letter.topic, headers["cx.dlq.stage"]) == ("t.dlq", "validate")
    assert "channel" in headers["cx.dlq.error.message"]


def test_an_event_keyed_by_something_else_is_republished_keyed_by_customer() -> None:
    handler = StreamHandler(SETTINGS)
    value = CODEC.encode(chat_contact()[0])
    handler.handle(record(value, key=b"contact-k-1"))
    drained = handler.drain()
    assert [(o.topic, o.key, o.value) for o in drained.outgoing] == [
        ("t.interactions", b"c-1", value)
    ]
    assert drained.records == []


def test_end_of_input_closes_the_session_and_the_state_ends_with_the_clock() -> None:
    handler = StreamHandler(CONTROL)
    for offset, ev in enumerate(chat_contact()):
        handler.handle(record(CODEC.encode(ev), offset=offset))
    handler.handle(record(None, offset=9, key=None, headers=[(CONTROL_HEADER, END_OF_INPUT)]))
    drained = handler.drain()

    finals = [r for r in drained.records if r.OUTPUT_NAME == "session" and r.status == "final"]
    assert len(finals) == 1
    # Resolved, but its repeat window has not passed at the end of the input.
    assert (finals[0].events, finals[0].first_outcome_resolved, finals[0].fcr_undecided) == (
        4,
        True,
        True,
    )
    sessions = [o for o in drained.outgoing if o.topic == "t.sessions"]
    decoded = RecordCodec("session").decode(sessions[-1].value)
    assert decoded["status"] == "final"
    state = drained.state[PARTITION]
    assert list(state)[-1] == clock_key(PARTITION)
    assert decode_position(state[clock_key(PARTITION)])[:3] == (
        T0 + 5 * MINUTE,
        9,
        record_crc(None, None),
    )


def _the_first_two_and_the_table(
    events: list[InteractionEvent],
) -> tuple[StreamHandler, dict[str, bytes | None]]:
    """A handler given the first two events, and the partition's table it drained."""
    handler = StreamHandler(CONTROL)
    for offset, ev in enumerate(events[:2]):
        handler.handle(record(CODEC.encode(ev), offset=offset))
    return handler, dict(handler.drain().state[PARTITION])


def _the_rest_then_end_of_input(handler: StreamHandler, events: list[InteractionEvent]) -> None:
    """Hand ``handler`` the events after the first two, then the end of input."""
    for offset, ev in enumerate(events[2:], start=2):
        handler.handle(record(CODEC.encode(ev), offset=offset))
    handler.handle(record(None, offset=9, key=None, headers=[(CONTROL_HEADER, END_OF_INPUT)]))


def test_a_restored_partition_continues_exactly_where_the_original_left_off() -> None:
    events = chat_contact()
    original, table = _the_first_two_and_the_table(events)

    restored = StreamHandler(CONTROL)
    assert restored.load_partition(PARTITION, table.items()) == 1
    for handler in (original, restored):
        _the_rest_then_end_of_input(handler, events)

    def finals(handler: StreamHandler):
        return [r for r in handler.drain().records if getattr(r, "status", "") == "final"]

    assert finals(restored) == finals(original)


@pytest.mark.parametrize("written_by", ["plain JSON", "zlib", "this version"])
def test_customer_states_are_stored_compressed_and_earlier_encodings_still_load(
    written_by: str,
) -> None:
    events = chat_contact()
    original, table = _the_first_two_and_the_table(events)
    stored = table["c-1"]
    assert stored is not None and stored.startswith(LZ4_STATE)
    plain = decode_table_state(stored)
    assert plain.startswith(b"{") and len(stored) < len(plain)

    # As this or an earlier version wrote it: LZ4, zlib, or the JSON state itself.
    earlier = {
        "plain JSON": plain,
        "zlib": COMPRESSED_STATE + zlib.compress(plain, 1),
        "this version": stored,
    }[written_by]
    restored = StreamHandler(CONTROL)
    assert restored.load_partition(PARTITION, {**table, "c-1": earlier}.items()) == 1
    for handler in (original, restored):
        _the_rest_then_end_of_input(handler, events)
    assert restored.drain().records == original.drain().records


def test_table_state_encoding_round_trips_and_leaves_plain_states_alone() -> None:
    state = b'{"v":2,"k":[' + b'["k-1","chat",1772431514977],' * 40 + b"[]]}"

    assert decode_table_state(encode_table_state(state)) == state
    assert len(encode_table_state(state)) < len(state) / 3
    assert decode_table_state(state) == state


def _restored_from(*drains: dict[str, bytes | None]) -> StreamHandler:
    """A new handler loaded from the table the given drained states left behind."""
    table: dict[bytes, bytes] = {}
    for changes in drains:
        for key, value in changes.items():
            if value is None:
                table.pop(key.encode(), None)
            else:
                table[key.encode()] = value
    restored = StreamHandler(SETTINGS)
    restored.load_partition(PARTITION, table.items())
    return restored


def test_records_redelivered_after_a_restore_are_skipped_and_their_dead_letters_not_repeated() -> (
    None
):
    events = chat_contact()
    original = StreamHandler(SETTINGS)
    original.handle(record(CODEC.encode(events[0]), offset=0))
    original.handle(record(b"not avro", offset=1))
    original.handle(record(CODEC.encode(events[1]), offset=2))
    restored = _restored_from(original.drain().state[PARTITION])

    # The consumer group had committed only offset 0: offsets 1 and 2 come again.
    restored.handle(record(b"not avro", offset=1))
    restored.handle(record(CODEC.encode(events[1]), offset=2))
    restored.handle(record(CODEC.encode(events[2]), offset=3))
    drained = restored.drain()

    assert restored.redelivered_skipped == 2
    assert [o.topic for o in drained.outgoing if o.topic.endswith("dlq")] == []
    position = decode_position(drained.state[PARTITION][clock_key(PARTITION)])
    assert position[:3] == (T0 + 20_000, 3, record_crc(b"c-1", CODEC.encode(events[2])))


def test_a_redelivered_event_of_an_evicted_customer_is_not_reported_late() -> None:
    # Event-id deduplication cannot catch this one: the customer's state, with
    # the ids it had seen, was evicted before the restart.
    other = next(
        f"c-{n}"
        for n in range(2, 500)
        if partition_for(f"c-{n}", SETTINGS.kafka.input_partitions) == PARTITION
    )
    first = event(1, T0, FEEDBACK, score=9)
    day_later = InteractionEvent(
        event_id="o1",
        occurred_at=T0 + 25 * 60 * MINUTE,
        customer_id=other,
        channel="chat",
        contact_id="k-2",
        type=CUSTOMER_MESSAGE,
        actor=CUSTOMER,
    )
    original = StreamHandler(SETTINGS)
    original.handle(record(CODEC.encode(first), offset=0))
    first_batch = original.drain().state[PARTITION]
    original.handle(record(CODEC.encode(day_later), offset=1, key=other.encode()))
    second_batch = original.drain().state[PARTITION]
    assert second_batch["c-1"] is None  # evicted: nothing open, nothing remembered
    restored = _restored_from(first_batch, second_batch)

    restored.handle(record(CODEC.encode(first), offset=0))
    drained = restored.drain()

    assert [r.OUTPUT_NAME for r in drained.records] == []
    assert restored.redelivered_skipped == 1


def test_a_partition_that_only_saw_dead_letters_still_stores_its_position() -> None:
    handler = StreamHandler(SETTINGS)
    handler.handle(record(b"not avro", offset=7))
    state = handler.drain().state[PARTITION]
    assert decode_position(state[clock_key(PARTITION)])[:3] == (
        None,
        7,
        record_crc(b"c-1", b"not avro"),
    )


def test_a_position_stored_by_an_earlier_version_restores_the_clock_alone() -> None:
    handler = StreamHandler(SETTINGS)
    handler.load_partition(PARTITION, [(clock_key(PARTITION).encode(), str(T0).encode())])
    assert handler.processors[PARTITION].clock_ms == T0
    assert handler.applied_offsets == {}


def test_a_hole_in_the_offsets_after_the_last_applied_record_is_reported() -> None:
    handler = StreamHandler(SETTINGS)
    assert handler.missing_before(PARTITION, 5) is None  # nothing applied yet
    handler.handle(record(CODEC.encode(chat_contact()[0]), offset=5))

    assert handler.missing_before(PARTITION, 6) is None  # the next record
    assert handler.missing_before(PARTITION, 3) is None  # a redelivery
    assert handler.missing_before(PARTITION, 9) == (6, 9)


def test_a_forgotten_position_processes_records_at_old_offsets_again() -> None:
    # After the input topic was recreated its offsets start again from 0.
    events = chat_contact()
    handler = StreamHandler(SETTINGS)
    handler.handle(record(CODEC.encode(events[0]), offset=5))
    handler.forget_position(PARTITION)
    handler.handle(record(CODEC.encode(events[1]), offset=0))

    assert handler.redelivered_skipped == 0
    assert handler.applied_offsets[PARTITION] == 0


def test_the_record_checksum_tells_key_and_value_apart() -> None:
    assert record_crc(b"ab", b"c") != record_crc(b"a", b"bc")
    assert record_crc(b"k", b"v") == record_crc(b"k", b"v")


# -- no single record stops the handler (issue 12) ---------------------------------


class RaisingFor:
    """A processor double: the real one, except that ``process`` raises for one event id."""

    def __init__(self, real: PartitionProcessor, event_id: str, error: Exception) -> None:
        self._real, self._event_id, self._error = real, event_id, error

    def process(self, ev: InteractionEvent) -> list[OutputRecord]:
        if ev.event_id == self._event_id:
            raise self._error
        return self._real.process(ev)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class Emitting:
    """A processor double whose ``process`` emits given records besides the real ones."""

    def __init__(self, real: PartitionProcessor, extra: list[OutputRecord]) -> None:
        self._real, self._extra = real, extra

    def process(self, ev: InteractionEvent) -> list[OutputRecord]:
        return self._real.process(ev) + self._extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _letters(outgoing) -> list[dict[str, str]]:
    return [parse_dead_letter_headers(o.headers) for o in outgoing if o.topic == "t.dlq"]


def _signal(from_contact_id: str = "k-0", gap_seconds: Any = 1.0) -> JourneySignal:
    return JourneySignal(
        signal_id="j-1",
        kind="switch_failure",
        customer_id="c-1",
        from_contact_id=from_contact_id,
        from_channel="chat",
        from_outcome=None,
        to_contact_id="k-1",
        to_channel="phone",
        gap_seconds=gap_seconds,
        topic=None,
        occurred_at=T0,
    )


def test_a_dead_letter_is_keyed_by_its_source_and_keeps_the_original_key_in_a_header() -> None:
    handler = StreamHandler(SETTINGS)
    handler.handle(record(b"not avro", offset=12, key=b"cust-9"))
    (letter,) = handler.drain().outgoing
    assert letter.key == f"t.interactions/{PARTITION}/12".encode()
    assert parse_dead_letter_headers(letter.headers)["cx.dlq.source.key"] == "cust-9"


def test_a_one_mebibyte_undecodable_record_becomes_a_dead_letter_within_the_cap() -> None:
    value = b"\xc3\x01" + b"\xee" * (1024 * 1024 - 2)
    handler = StreamHandler(SETTINGS)
    handler.handle(record(value, offset=3))
    (letter,) = handler.drain().outgoing
    headers = parse_dead_letter_headers(letter.headers)

    assert record_size(letter.key, letter.value, letter.headers) <= 900_000
    assert letter.value == value[: len(letter.value or b"")]
    assert (headers["cx.dlq.stage"], headers["cx.dlq.truncated"]) == ("decode", "value")
    assert headers["cx.dlq.value.sha256"] == hashlib.sha256(value).hexdigest()
    assert headers["cx.dlq.value.bytes"] == str(1024 * 1024)
    assert headers["cx.dlq.source.offset"] == "3"


def test_a_processor_that_raises_for_one_record_dead_letters_it_and_goes_on() -> None:
    events = chat_contact()
    handler = StreamHandler(SETTINGS)
    handler.processors[PARTITION] = RaisingFor(
        PartitionProcessor.from_settings(SETTINGS, partition=PARTITION),
        "e2",
        KeyError("half-changed"),
    )
    for offset, ev in enumerate(events):
        handler.handle(record(CODEC.encode(ev), offset=offset))
    drained = handler.drain()

    (letter,) = _letters(drained.outgoing)
    assert (letter["cx.dlq.stage"], letter["cx.dlq.error.class"]) == ("process", "KeyError")
    assert letter["cx.dlq.source.offset"] == "1"
    assert "half-changed" in letter["cx.dlq.error.message"]
    contacts = [r for r in drained.records if r.OUTPUT_NAME == "contact"]
    assert [c.contact_id for c in contacts] == ["k-1"]  # the later events were applied
    assert decode_position(drained.state[PARTITION][clock_key(PARTITION)]).applied_offset == 3


def test_a_dead_letter_from_the_processor_is_counted_with_stage_process() -> None:
    counted: list[tuple[str, ...]] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return lambda *args: counted.append(args) if name == "dead_letter" else None

    handler = StreamHandler(SETTINGS, metrics=Counting())
    handler.processors[PARTITION] = RaisingFor(
        PartitionProcessor.from_settings(SETTINGS, partition=PARTITION), "e1", ValueError("x")
    )
    handler.handle(record(CODEC.encode(chat_contact()[0])))
    assert counted == [("process", "ValueError")]


def test_a_decoder_that_raises_something_unexpected_gives_a_decode_dead_letter() -> None:
    handler = StreamHandler(SETTINGS)

    def broken(value: bytes) -> InteractionEvent:
        raise IndexError("enum index -1")

    handler._event_codec.decode = broken
    handler.handle(record(b"\xc3\x01whatever", offset=5))
    (letter,) = _letters(handler.drain().outgoing)
    assert (letter["cx.dlq.stage"], letter["cx.dlq.error.class"]) == ("decode", "IndexError")


def test_an_output_that_fails_to_encode_dead_letters_its_input_with_stage_encode() -> None:
    handler = StreamHandler(SETTINGS)
    handler.processors[PARTITION] = Emitting(
        PartitionProcessor.from_settings(SETTINGS, partition=PARTITION),
        [_signal(gap_seconds="not a number")],
    )
    handler.handle(record(CODEC.encode(chat_contact()[0]), offset=4))
    drained = handler.drain()

    (letter,) = _letters(drained.outgoing)
    assert (letter["cx.dlq.stage"], letter["cx.dlq.source.offset"]) == ("encode", "4")
    assert "t.journey-signals" not in [o.topic for o in drained.outgoing]


def test_an_output_over_the_cap_is_not_sent_and_its_input_is_dead_lettered() -> None:
    huge = _signal(from_contact_id="k" * 20_000)
    handler = StreamHandler(SMALL_CAP)
    handler.processors[PARTITION] = Emitting(
        PartitionProcessor.from_settings(SMALL_CAP, partition=PARTITION), [huge, huge]
    )
    handler.handle(record(CODEC.encode(chat_contact()[0]), offset=6))
    drained = handler.drain()

    (letter,) = _letters(drained.outgoing)  # one per input record, however many outputs
    assert (letter["cx.dlq.stage"], letter["cx.dlq.error.class"]) == (
        "encode",
        "RecordTooLargeError",
    )
    assert "limits.max_record_bytes" in letter["cx.dlq.error.message"]
    assert all(record_size(o.key, o.value, o.headers) <= 10_000 for o in drained.outgoing)
    assert "t.journey-signals" not in [o.topic for o in drained.outgoing]


def test_a_late_event_whose_payload_is_too_large_is_sent_with_the_payload_cut_and_marked() -> None:
    payload = chat_contact()[0].to_json_dict()
    payload["attributes"] = {"note": "\x01" * 30_000}  # ~180 kB of JSON escapes
    late = LateEvent(
        event_id="e9",
        customer_id="c-1",
        occurred_at=T0,
        clock_at=T0 + 60 * MINUTE,
        reason="session_closed",
        event=payload,
    )
    handler = StreamHandler(SMALL_CAP)
    handler.processors[PARTITION] = Emitting(
        PartitionProcessor.from_settings(SMALL_CAP, partition=PARTITION), [late]
    )
    handler.handle(record(CODEC.encode(chat_contact()[0]), offset=0))
    drained = handler.drain()

    (sent,) = [o for o in drained.outgoing if o.topic == "t.late-events"]
    assert record_size(sent.key, sent.value, sent.headers) <= 10_000
    assert dict(sent.headers or ()) == {"cx.truncated": b"event"}
    decoded = RecordCodec("late_event").decode(sent.value or b"")
    full = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    marker = decoded["event"]["cx_truncated"]
    assert marker["sha256"] == hashlib.sha256(full.encode()).hexdigest()
    assert marker["bytes"] == len(full)
    assert full.startswith(marker["prefix"]) and len(marker["prefix"]) > 3000
    assert (decoded["event_id"], decoded["reason"]) == ("e9", "session_closed")
    assert _letters(drained.outgoing) == []


def test_a_rekeyed_record_over_the_cap_is_dead_lettered_instead() -> None:
    # Re-keyed records keep their headers: a producer's 12 kB header goes along.
    value = CODEC.encode(chat_contact()[0])
    handler = StreamHandler(SMALL_CAP)
    handler.handle(record(value, offset=2, key=b"contact-k-1", headers=[("trace", b"x" * 12_000)]))
    drained = handler.drain()

    (letter,) = _letters(drained.outgoing)
    assert (letter["cx.dlq.stage"], letter["cx.dlq.error.class"]) == (
        "encode",
        "RecordTooLargeError",
    )
    assert [o.topic for o in drained.outgoing] == ["t.dlq"]


def test_end_of_input_is_dead_lettered_when_control_records_are_off() -> None:
    handler = StreamHandler(SETTINGS)
    for offset, ev in enumerate(chat_contact()):
        handler.handle(record(CODEC.encode(ev), offset=offset))
    handler.handle(record(None, offset=9, key=None, headers=[(CONTROL_HEADER, END_OF_INPUT)]))
    drained = handler.drain()

    (letter,) = _letters(drained.outgoing)
    assert (letter["cx.dlq.stage"], letter["cx.dlq.error.class"]) == (
        "control",
        "ControlRecordRefused",
    )
    assert "worker.control_records" in letter["cx.dlq.error.message"]
    assert [r for r in drained.records if getattr(r, "status", "") == "final"] == []


def test_an_event_further_ahead_of_the_wall_clock_than_the_skew_is_dead_lettered() -> None:
    handler = StreamHandler(SETTINGS, wall_clock_ms=lambda: T0)
    skew_ms = int(SETTINGS.limits.max_future_skew_seconds * 1000)
    handler.handle(record(CODEC.encode(event(1, T0 + skew_ms, CONTACT_STARTED)), offset=0))
    handler.handle(record(CODEC.encode(event(2, T0 + skew_ms + 1, CUSTOMER_MESSAGE)), offset=1))
    drained = handler.drain()

    (letter,) = _letters(drained.outgoing)
    assert (letter["cx.dlq.stage"], letter["cx.dlq.error.field"]) == ("validate", "occurred_at")
    assert letter["cx.dlq.source.offset"] == "1"
    assert handler.processors[PARTITION].clock_ms == T0 + skew_ms


def _unanswered_chat_then_end_of_input(value: bytes | None) -> list[OutputRecord]:
    handler = StreamHandler(CONTROL)
    handler.handle(record(CODEC.encode(event(1, T0, CONTACT_STARTED)), offset=0))
    handler.handle(record(CODEC.encode(event(2, T0 + 1000, CUSTOMER_MESSAGE)), offset=1))
    handler.handle(record(value, offset=2, key=None, headers=[(CONTROL_HEADER, END_OF_INPUT)]))
    return handler.drain().records


def _breaches(records: list[OutputRecord]) -> list[str]:
    return [r.policy for r in records if getattr(r, "kind", None) == "breach"]


def test_end_of_input_that_carries_the_input_end_fires_what_is_due_before_it() -> None:
    """A partition whose own last event is early ends at the whole input's end, as the replay."""
    assert _breaches(_unanswered_chat_then_end_of_input(str(T0 + 10 * MINUTE).encode())) == [
        "chat_first_reply"
    ]


def test_end_of_input_without_a_time_ends_the_partition_at_its_own_last_event() -> None:
    assert _breaches(_unanswered_chat_then_end_of_input(None)) == []


def test_end_of_input_with_an_unreadable_time_is_a_control_dead_letter_and_closes_nothing() -> None:
    handler = StreamHandler(CONTROL)
    handler.handle(record(CODEC.encode(event(1, T0, CONTACT_STARTED)), offset=0))
    handler.handle(record(b"soon", offset=1, key=None, headers=[(CONTROL_HEADER, END_OF_INPUT)]))
    drained = handler.drain()

    (letter,) = _letters(drained.outgoing)
    assert letter["cx.dlq.stage"] == "control"
    assert "b'soon'" in letter["cx.dlq.error.message"]
    assert handler.processors[PARTITION].open_sessions() == 1
