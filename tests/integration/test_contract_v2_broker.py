"""Contract v2 rollout on a real broker: v1 and v2 producers share one topic.

A producer still on v1 writes with plain fastavro and the stored v1 schema (as a
channel team's own Avro library would); the producer library writes v2. The
cxstream reader decodes both; a consumer still on the v1 reader schema reads the
v1 fields of the v2 records.
"""

from __future__ import annotations

import dataclasses
from io import BytesIO

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from kafka import KafkaProducer

from pipeline.contract.bench import sample_events
from pipeline.contract.codec import HEADER_LENGTH, MAGIC, EventCodec
from pipeline.contract.event import CONTACT_ENDED
from pipeline.contract.schemas import current, load_versions
from pipeline.producer import EventProducer
from pipeline.settings_loader import build_settings
from tests.integration.test_producer import consume_all

V1 = load_versions("interaction_event")[0]
#: What the producer library writes: the newest stored version (v3 since issue 16).
NEWEST = current("interaction_event")
V1_NAMES = [field["name"] for field in V1.raw["fields"]]


def _v1_bytes(record: dict) -> bytes:
    out = BytesIO()
    out.write(MAGIC + V1.fingerprint)
    schemaless_writer(out, parse_schema(V1.raw), record)
    return out.getvalue()


def test_v1_and_v2_producers_on_one_topic_are_read_by_v2_and_by_v1_readers(
    kafka_bootstrap, kafka_settings, make_topics
):
    (topic,) = make_topics("interactions", partitions=2)
    events = sample_events(40)
    old_events, new_events = (
        events[:20],
        [
            dataclasses.replace(
                event,
                need_id=f"CRM-{index:04d}",
                queue="cards_fi",
                team="cards_helsinki",
                handling_seconds=90.5 if event.type == CONTACT_ENDED else None,
                identifier_kind="chat_session",
                identifier_value=f"sess-{index:04d}",
            )
            for index, event in enumerate(events[20:])
        ],
    )
    v1_producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for event in old_events:
            record = {k: v for k, v in event.to_record().items() if k in V1_NAMES}
            v1_producer.send(topic, key=event.customer_id.encode(), value=_v1_bytes(record))
        v1_producer.flush(30)
    finally:
        v1_producer.close()
    with EventProducer(kafka_settings, topic, build_settings().channels) as producer:
        for event in new_events:
            producer.send(event)
        producer.flush(30)

    records = consume_all(kafka_bootstrap, topic, expected=40)
    assert len(records) == 40
    fingerprints = sorted(bytes(r.value[2:HEADER_LENGTH]).hex() for r in records)
    assert fingerprints == sorted([NEWEST.fingerprint_hex] * 20 + [V1.fingerprint_hex] * 20)

    codec = EventCodec()
    decoded = sorted((codec.decode(r.value) for r in records), key=lambda e: e.event_id)
    assert decoded == sorted(events[:20] + new_events, key=lambda e: e.event_id)

    v1_reader = parse_schema(V1.raw)
    newest_writer = parse_schema(NEWEST.raw)
    read_on_v1 = {}
    for r in records:
        if bytes(r.value[2:HEADER_LENGTH]) == NEWEST.fingerprint:
            body = BytesIO(r.value[HEADER_LENGTH:])
            record = schemaless_reader(body, newest_writer, v1_reader)
            read_on_v1[record["event_id"]] = (list(record), record["customer_id"], record["topic"])
    assert read_on_v1 == {e.event_id: (V1_NAMES, e.customer_id, e.topic) for e in new_events}
