"""The worker's identity wiring without a broker (issue 16).

The two handlers the worker's loop drives, :class:`StreamHandler` (input and
``interactions-rekeyed``) and :class:`IdentityHandler` (``identity``), run over
an in-memory log per topic partition: what one batch sends is read by a later
batch, the state each batch writes is what a restart loads, as the loop and
the one commit function do with Kafka. The integration tests
(tests/integration/test_identity_worker.py) run the same through the real worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from pipeline.contract.codec import EventCodec, RecordCodec
from pipeline.contract.event import (
    CUSTOMER_MESSAGE,
    IDENTIFIED,
    NO_CUSTOMER,
    InteractionEvent,
    record_key,
)
from pipeline.core.identity_stage import CustomerEvent, Unattribution
from pipeline.core.partitioning import partition_for
from pipeline.dlq import parse_dead_letter_headers
from pipeline.identity_streaming import IdentityHandler
from pipeline.identity_wire import (
    IDENTITY_HEADER,
    IdentityEnd,
    decode_rekeyed,
    encode_routed,
    end_marker,
)
from pipeline.producer import EventProducer
from pipeline.replay import replay_events, standing
from pipeline.settings import KafkaSettings
from pipeline.settings_loader import build_settings
from pipeline.stream_records import CONTROL_HEADER, END_OF_INPUT, Outgoing, RawRecord
from pipeline.stream_state import clock_key, decode_position
from pipeline.streaming import StreamHandler
from pipeline.tools.simulator import SimulatorConfig, generate
from tests.sink_kept import sink_kept_records
from tests.unit.test_identity_stream_like import _counted

PARTITIONS = 3
SETTINGS = build_settings(
    {
        "kafka": {"topic_prefix": "t", "input_partitions": PARTITIONS},
        "worker": {"clock": "stream", "control_records": True},
    }
)
CODEC = EventCodec()
T0 = 1_772_439_300_250
ANONYMOUS = InteractionEvent(
    event_id="ph-anon-1",
    occurred_at=T0,
    customer_id=NO_CUSTOMER,
    channel="phone",
    contact_id="call-77",
    type=CUSTOMER_MESSAGE,
    actor="customer",
    identifier_kind="phone",
    identifier_value="+358401234567",
)
IDENTIFIED_EVENT = dataclasses.replace(
    ANONYMOUS,
    event_id="ph-ident-1",
    occurred_at=T0 + 40_000,
    customer_id="cust-000123",
    type=IDENTIFIED,
    actor="system",
)


def _raw(topic: str, partition: int, offset: int, out: Outgoing) -> RawRecord:
    return RawRecord(topic, partition, offset, out.key, out.value, None, tuple(out.headers or ()))


# -- keys, the producer, the wire format ---------------------------------------------


def test_identity_events_are_keyed_by_their_identifier_and_the_rest_by_customer():
    known = dataclasses.replace(ANONYMOUS, customer_id="cust-000123")
    assert record_key(ANONYMOUS) == "id:phone:+358401234567"
    assert record_key(IDENTIFIED_EVENT) == "id:phone:+358401234567"
    assert record_key(known) == "cust-000123"


class _Client:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def send(self, topic, *, key, value):
        self.sent.append((topic, key, value))

        class _Future:
            def add_errback(self, callback):
                return self

        return _Future()

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        pass


def test_the_producer_library_sends_identity_events_keyed_by_the_identifier():
    client = _Client()
    producer = EventProducer(KafkaSettings(), "cx.interactions", SETTINGS.channels, client=client)
    producer.send(ANONYMOUS)
    producer.send(IDENTIFIED_EVENT)
    assert [(key, CODEC.decode(value)) for _, key, value in client.sent] == [
        (b"id:phone:+358401234567", ANONYMOUS),
        (b"id:phone:+358401234567", IDENTIFIED_EVENT),
    ]


def test_re_keyed_records_read_back_as_what_identity_routed():
    released = CustomerEvent(dataclasses.replace(ANONYMOUS, customer_id="cust-1"), released=True)
    taken = Unattribution("cust-1", ("e1", "e2"))
    for routed in (released, taken):
        wire = encode_routed(routed, CODEC)
        assert wire.key == b"cust-1"
        assert decode_rekeyed(wire.value, wire.headers, CODEC) == routed
    marker = end_marker(2, T0)
    assert decode_rekeyed(marker.value, marker.headers, CODEC) == IdentityEnd(2, T0)


def test_the_identity_link_schema_reads_back_a_link_record():
    from pipeline.core.identity import IdentityLinkRecord

    link = IdentityLinkRecord("phone:ab:1", "phone:ab", "phone", None, T0, None, T0 + 5)
    codec = RecordCodec("identity_link")
    assert codec.decode(codec.encode_record(link)) == link.to_dict()


# -- the two handlers, one record at a time ------------------------------------------


def _input(event: InteractionEvent, offset: int, partition: int = 0) -> RawRecord:
    return RawRecord(
        "t.interactions", partition, offset, record_key(event).encode(), CODEC.encode(event), None
    )


def test_the_worker_forwards_identity_events_to_the_identity_topic_under_their_key():
    handler = StreamHandler(SETTINGS, identity=True)
    handler.handle(_input(ANONYMOUS, 0))
    handler.handle(_input(IDENTIFIED_EVENT, 1))
    drained = handler.drain()
    assert [(o.topic, o.key, o.value) for o in drained.outgoing] == [
        ("t.identity", b"id:phone:+358401234567", CODEC.encode(ANONYMOUS)),
        ("t.identity", b"id:phone:+358401234567", CODEC.encode(IDENTIFIED_EVENT)),
    ]
    assert handler.processors[0].stats.events == 0


def test_a_malformed_identity_event_is_still_a_dead_letter():
    handler = StreamHandler(SETTINGS, identity=True)
    bare = dataclasses.replace(ANONYMOUS, identifier_kind=None, identifier_value=None)
    handler.handle(_input(bare, 0))
    [letter] = handler.drain().outgoing
    headers = parse_dead_letter_headers(letter.headers)
    assert (letter.topic, headers["cx.dlq.stage"]) == ("t.dlq", "validate")


def test_identity_releases_held_events_to_the_customer_and_stores_the_identifier():
    identity = IdentityHandler(SETTINGS)
    for offset, event in enumerate((ANONYMOUS, IDENTIFIED_EVENT)):
        identity.handle(
            RawRecord(
                "t.identity", 1, offset, record_key(event).encode(), CODEC.encode(event), None
            )
        )
    drained = identity.drain()
    rekeyed = [o for o in drained.outgoing if o.topic == "t.interactions-rekeyed"]
    assert [decode_rekeyed(o.value, o.headers or (), CODEC) for o in rekeyed] == [
        CustomerEvent(
            dataclasses.replace(ANONYMOUS, customer_id="cust-000123"),
            released=True,
            identified_at=IDENTIFIED_EVENT.occurred_at,
        )
    ]
    assert [o.key for o in rekeyed] == [b"cust-000123"]
    [link] = [o for o in drained.outgoing if o.topic == "t.identity-links"]
    assert RecordCodec("identity_link").decode(link.value)["customer_id"] == "cust-000123"
    state = drained.state[1]
    assert list(state) == ["phone:+358401234567", clock_key(1)]
    assert decode_position(state[clock_key(1)])[:2] == (T0 + 40_000, 1)
    # A restart from that state skips the redelivered records and knows the link.
    restarted = IdentityHandler(SETTINGS)
    restarted.load_partition(1, state.items())
    restarted.handle(RawRecord("t.identity", 1, 1, b"k", CODEC.encode(IDENTIFIED_EVENT), None))
    later = dataclasses.replace(ANONYMOUS, event_id="ph-anon-2", occurred_at=T0 + 60_000)
    restarted.handle(RawRecord("t.identity", 1, 2, b"k", CODEC.encode(later), None))
    [again] = [o for o in restarted.drain().outgoing if o.topic == "t.interactions-rekeyed"]
    assert decode_rekeyed(again.value, again.headers or (), CODEC) == CustomerEvent(
        dataclasses.replace(later, customer_id="cust-000123"),
        released=True,
        identified_at=IDENTIFIED_EVENT.occurred_at,
    )


def test_an_event_with_a_customer_on_the_identity_topic_is_a_dead_letter():
    identity = IdentityHandler(SETTINGS)
    known = dataclasses.replace(ANONYMOUS, customer_id="cust-1")
    identity.handle(RawRecord("t.identity", 0, 0, b"k", CODEC.encode(known), None))
    [letter] = identity.drain().outgoing
    assert parse_dead_letter_headers(letter.headers)["cx.dlq.stage"] == "validate"


def test_a_partition_ends_its_input_only_after_every_identity_partition_ended():
    handler = StreamHandler(SETTINGS, identity=True)
    known = dataclasses.replace(ANONYMOUS, customer_id="cust-1", event_id="k1")
    handler.handle(_input(known, 0))
    marker = RawRecord(
        "t.interactions", 0, 1, None, str(T0).encode(), None, ((CONTROL_HEADER, END_OF_INPUT),)
    )
    handler.handle(marker)
    drained = handler.drain()
    forwarded = [o for o in drained.outgoing if o.topic == "t.identity"]
    assert [(o.partition, o.value) for o in forwarded] == [(0, str(T0).encode())]
    assert not [r for r in drained.records if r.OUTPUT_NAME == "session" and r.status == "final"]
    finals: list = []
    for identity_partition in range(PARTITIONS):
        wire = end_marker(identity_partition, T0)
        handler.handle(
            RawRecord(
                "t.interactions-rekeyed",
                0,
                identity_partition,
                wire.key,
                wire.value,
                None,
                wire.headers,
            )
        )
        records = handler.drain().records
        finals += [r for r in records if r.OUTPUT_NAME == "session" and r.status == "final"]
        assert len(finals) == (1 if identity_partition == PARTITIONS - 1 else 0)


def test_the_wait_for_the_end_of_input_survives_a_restart():
    handler = StreamHandler(SETTINGS, identity=True)
    handler.handle(
        RawRecord("t.interactions", 0, 0, None, b"", None, ((CONTROL_HEADER, END_OF_INPUT),))
    )
    wire = end_marker(1, None)
    handler.handle(
        RawRecord("t.interactions-rekeyed", 0, 0, wire.key, wire.value, None, wire.headers)
    )
    state = handler.drain().state[0]
    position = decode_position(state[clock_key(0)])
    assert (position.applied_offset, position.rekeyed_offset) == (0, 0)
    assert (position.input_ended, position.identity_ended) == (True, (1,))
    restored = StreamHandler(SETTINGS, identity=True)
    restored.load_partition(0, state.items())
    assert restored.missing_before(0, 1, "t.interactions-rekeyed") is None
    assert restored.missing_before(0, 3, "t.interactions-rekeyed") == (1, 3)


# -- a whole run over in-memory topics -----------------------------------------------


class Logs:
    """Topic partitions as lists; consumer positions; the two changelogs."""

    def __init__(self) -> None:
        self.topics: dict[str, list[list[RawRecord]]] = {
            name: [[] for _ in range(PARTITIONS)]
            for name in ("t.interactions", "t.identity", "t.interactions-rekeyed")
        }
        self.others: list[Outgoing] = []
        self.changelogs: dict[str, dict[int, dict[str, bytes]]] = {"customers": {}, "identity": {}}

    def append(self, outgoing: Iterable[Outgoing]) -> None:
        for out in outgoing:
            if out.topic not in self.topics:
                self.others.append(out)
                continue
            partition = out.partition
            if partition is None:
                assert out.key is not None
                partition = partition_for(out.key.decode(), PARTITIONS)
            log = self.topics[out.topic][partition]
            log.append(_raw(out.topic, partition, len(log), out))

    def write_state(self, name: str, state: dict[int, dict[str, bytes | None]]) -> None:
        for partition, changes in state.items():
            table = self.changelogs[name].setdefault(partition, {})
            for key, value in changes.items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value


def _worker(logs: Logs) -> tuple[StreamHandler, IdentityHandler, dict[tuple[str, int], int]]:
    """Handlers restored from the changelogs, and where each topic partition resumes."""
    customers = StreamHandler(SETTINGS, identity=True)
    identity = IdentityHandler(SETTINGS)
    positions: dict[tuple[str, int], int] = {}
    for p in range(PARTITIONS):
        customers.load_partition(p, logs.changelogs["customers"].get(p, {}).items())
        identity.load_partition(p, logs.changelogs["identity"].get(p, {}).items())
        positions["t.interactions", p] = customers.applied_offsets.get(p, -1) + 1
        positions["t.interactions-rekeyed", p] = customers.applied_rekeyed.get(p, -1) + 1
        positions["t.identity", p] = identity.applied_offsets.get(p, -1) + 1
    return customers, identity, positions


def _run_worker(events: list[InteractionEvent], *, chunk: int, crash_after: int | None = None):
    """Every topic partition read ``chunk`` records at a time; with ``crash_after``, the
    worker loses everything not committed after that many batches and restarts."""
    logs = Logs()
    for event in events:
        key = record_key(event)
        partition = partition_for(key, PARTITIONS)
        log = logs.topics["t.interactions"][partition]
        log.append(
            RawRecord(
                "t.interactions", partition, len(log), key.encode(), CODEC.encode(event), None
            )
        )
    input_end = str(max(e.occurred_at for e in events)).encode()
    for partition, log in enumerate(logs.topics["t.interactions"]):
        log.append(
            RawRecord(
                "t.interactions",
                partition,
                len(log),
                None,
                input_end,
                None,
                ((CONTROL_HEADER, END_OF_INPUT),),
            )
        )
    records: list = []
    customers, identity, positions = _worker(logs)
    batches = 0
    while True:
        batch = []
        for topic, partitions in logs.topics.items():
            for p, log in enumerate(partitions):
                start = positions[topic, p]
                batch += log[start : start + chunk]
                positions[topic, p] = min(len(log), start + chunk)
        if not batch:
            break
        for record in batch:
            (identity if record.topic == "t.identity" else customers).handle(record)
        drained, drained_identity = customers.drain(), identity.drain()
        batches += 1
        if crash_after is not None and batches == crash_after:
            customers, identity, positions = _worker(logs)  # this batch was never written
            continue
        records += drained.records
        logs.append([*drained.outgoing, *drained_identity.outgoing])
        logs.write_state("customers", drained.state)
        logs.write_state("identity", drained_identity.state)
    return records, logs


def _events(seed: int = 9) -> list[InteractionEvent]:
    config = SimulatorConfig(count=3000, seed=seed, identity_share=0.5, malformed_share=0.0)
    return [item.event for item in generate(config) if item.event is not None]


def _links(outgoing: Iterable[Outgoing]) -> dict[str, dict]:
    codec = RecordCodec("identity_link")
    latest = {}
    for out in outgoing:
        if out.topic == "t.identity-links":
            assert out.value is not None
            record = codec.decode(out.value)
            latest[record["link_id"]] = record
    return latest


@pytest.mark.parametrize("crash_after", [None, 7], ids=["uninterrupted", "crash-after-7-batches"])
def test_the_handlers_over_topics_count_identity_traffic_as_the_replay_does(crash_after):
    events = _events()
    replayed = replay_events(events, SETTINGS, partitions=PARTITIONS)
    records, logs = _run_worker(events, chunk=5, crash_after=crash_after)
    assert _counted(records) == _counted(replayed.records)
    assert _links(logs.others) == {link.link_id: link.to_dict() for link in replayed.identity_links}
    assert not [o for o in logs.others if o.topic == "t.dlq"]
    assert IDENTITY_HEADER in {
        h for r in logs.topics["t.interactions-rekeyed"][0] for h, _ in r.headers
    }


@pytest.mark.parametrize("chunk", [5, 50])
@pytest.mark.parametrize("seed", [9, 3])
def test_every_row_that_counts_equals_the_replay_whenever_released_events_arrive(seed, chunk):
    """Released events reach their customer a batch or two after the replay applies
    them (``chunk`` records per topic partition and batch). Journeys and needs are
    named after their earliest event and contact, so every row that counts equals the
    replay's, ids, journey of each contact and bounce included; only ``version`` and
    the rows that never count (superseded, retracted) may differ
    (pipeline.replay.standing; docs/architecture.md, "Worker and replay")."""
    events = _events(seed)
    replayed = replay_events(events, SETTINGS, partitions=PARTITIONS).records
    replay = standing(sink_kept_records(replayed))
    records, _ = _run_worker(events, chunk=chunk)
    streamed = standing(sink_kept_records(records))
    for name in replay:
        assert streamed[name] == replay[name], name
    assert len(replay["session"]) > 500 and len(replay["need"]) > 500
    assert sum(1 for c in replay["contact"].values() if c["identified_at"] is not None) > 50


@pytest.mark.parametrize(
    ("seed", "share"),
    [(1, 0.3), (3, 0.5)],
    ids=["number-identified-as-another-customer-mid-call", "wrong-link-mid-call"],
)
def test_a_contact_whose_identifier_changes_customer_during_it_has_one_customer(seed, share):
    """Traffic where a phone number is linked to another customer during a call
    (found by a sweep of seeds): identity gives the whole call to one customer, so
    the sink keeps the replay's rows whatever order the two customers' records come
    in (they were split, and the sink kept whichever arrived last)."""
    config = SimulatorConfig(customers=150, count=3000, seed=seed, identity_share=share)
    events = [item.event for item in generate(config) if item.event is not None]
    replay = standing(sink_kept_records(replay_events(events, SETTINGS, partitions=3).records))
    records, _ = _run_worker(events, chunk=7)
    streamed = standing(sink_kept_records(records))
    for name in replay:
        assert streamed[name] == replay[name], name
