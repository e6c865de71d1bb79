"""The streaming glue, driven with plain records (no broker)."""

from __future__ import annotations

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
from pipeline.dlq import parse_dead_letter_headers
from pipeline.settings import build_settings
from pipeline.streaming import (
    COMPRESSED_STATE,
    CONTROL_HEADER,
    END_OF_INPUT,
    RawRecord,
    StreamHandler,
    clock_key,
    decode_position,
    decode_table_state,
    encode_table_state,
    record_crc,
)

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
MINUTE = 60_000
SETTINGS = build_settings({"kafka": {"topic_prefix": "t"}, "worker": {"clock": "stream"}})
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
    assert letter.key == b"c-1"
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
    handler = StreamHandler(SETTINGS)
    for offset, ev in enumerate(chat_contact()):
        handler.handle(record(CODEC.encode(ev), offset=offset))
    handler.handle(record(None, offset=9, key=None, headers=[(CONTROL_HEADER, END_OF_INPUT)]))
    drained = handler.drain()

    finals = [r for r in drained.records if r.OUTPUT_NAME == "session" and r.status == "final"]
    assert len(finals) == 1
    assert (finals[0].events, finals[0].first_contact_resolved) == (4, True)
    sessions = [o for o in drained.outgoing if o.topic == "t.sessions"]
    decoded = RecordCodec("session").decode(sessions[-1].value)
    assert decoded["status"] == "final"
    state = drained.state[PARTITION]
    assert list(state)[-1] == clock_key(PARTITION)
    assert decode_position(state[clock_key(PARTITION)]) == (
        T0 + 5 * MINUTE,
        9,
        record_crc(None, None),
    )


def _the_first_two_and_the_table(
    events: list[InteractionEvent],
) -> tuple[StreamHandler, dict[str, bytes | None]]:
    """A handler given the first two events, and the partition's table it drained."""
    handler = StreamHandler(SETTINGS)
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

    restored = StreamHandler(SETTINGS)
    assert restored.load_partition(PARTITION, table.items()) == 1
    for handler in (original, restored):
        _the_rest_then_end_of_input(handler, events)

    def finals(handler: StreamHandler):
        return [r for r in handler.drain().records if getattr(r, "status", "") == "final"]

    assert finals(restored) == finals(original)


def test_customer_states_are_stored_compressed_and_plain_ones_still_load() -> None:
    events = chat_contact()
    original, table = _the_first_two_and_the_table(events)
    stored = table["c-1"]
    assert stored is not None and stored.startswith(COMPRESSED_STATE)
    plain = decode_table_state(stored)
    assert plain.startswith(b"{") and len(stored) < len(plain)

    # As an earlier version wrote it: the JSON state itself.
    written_before = {**table, "c-1": plain}
    restored = StreamHandler(SETTINGS)
    assert restored.load_partition(PARTITION, written_before.items()) == 1
    for handler in (original, restored):
        _the_rest_then_end_of_input(handler, events)
    assert restored.drain().records == original.drain().records


def test_table_state_encoding_round_trips_and_leaves_plain_states_alone() -> None:
    state = b'{"v":2,"k":[' + b'["k-1","chat",1772431514977],' * 40 + b"[]]}"

    assert decode_table_state(encode_table_state(state)) == state
    assert len(encode_table_state(state)) < len(state) / 4
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
    assert position == (T0 + 20_000, 3, record_crc(b"c-1", CODEC.encode(events[2])))


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
    assert decode_position(state[clock_key(PARTITION)]) == (
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
