"""The producer library against a real broker: what goes in reads back out."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from pipeline.contract.bench import sample_events
from pipeline.contract.codec import EventCodec
from pipeline.contract.jsonform import write_events
from pipeline.producer import EventProducer, produce_file
from pipeline.settings_loader import build_settings


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Every record of ``topic`` from the start, once ``expected`` have arrived."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def test_produced_file_reads_back_event_for_event(
    kafka_bootstrap, kafka_settings, make_topics, tmp_path
):
    (topic,) = make_topics("interactions", partitions=3)
    events = sample_events(120)
    path = tmp_path / "events.jsonl"
    write_events(path, events)
    channels = build_settings().channels

    with EventProducer(kafka_settings, topic, channels) as producer:
        report = produce_file(path, producer)

    assert (report.sent, report.rejected) == (120, [])
    records = consume_all(kafka_bootstrap, topic, expected=120)
    codec = EventCodec()
    decoded = [codec.decode(record.value) for record in records]
    assert sorted(decoded, key=lambda e: e.event_id) == sorted(events, key=lambda e: e.event_id)
    assert all(record.key == codec.decode(record.value).customer_id.encode() for record in records)
    # Keyed by customer: each customer's events sit on one partition, in send order.
    by_customer: dict[str, set[int]] = {}
    for record in records:
        by_customer.setdefault(record.key.decode(), set()).add(record.partition)
    assert {len(parts) for parts in by_customer.values()} == {1}
    for customer in by_customer:
        sent_order = [e.event_id for e in events if e.customer_id == customer]
        read_order = [e.event_id for e in decoded if e.customer_id == customer]
        assert read_order == sent_order


def test_invalid_lines_are_reported_and_not_sent(
    kafka_bootstrap, kafka_settings, make_topics, tmp_path
):
    (topic,) = make_topics("interactions")
    events = sample_events(3)
    path = tmp_path / "mixed.jsonl"
    write_events(path, events)
    with path.open("a", encoding="utf-8") as out:
        out.write('{"event_id": "x"}\n')
    channels = build_settings().channels

    with EventProducer(kafka_settings, topic, channels) as producer:
        report = produce_file(path, producer)

    assert report.sent == 3
    # Contract v3: a missing customer_id is allowed when an identifier is set,
    # so the first field reported missing is the channel.
    assert [(line, error.field) for line, error in report.rejected] == [(4, "channel")]
    assert len(consume_all(kafka_bootstrap, topic, expected=4, timeout_s=5)) == 3
