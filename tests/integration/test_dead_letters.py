"""Malformed input records land on the DLQ topic untouched, with the reason."""

from __future__ import annotations

import pytest

import pipeline
from pipeline.contract.bench import sample_events
from pipeline.contract.codec import MAGIC, EventCodec
from pipeline.dlq import KafkaDeadLetterWriter, build_dead_letter, parse_dead_letter_headers
from pipeline.errors import DecodeError
from tests.integration.test_producer import consume_all

NOW_MS = 1_772_439_300_000
GOOD = EventCodec().encode(sample_events(1)[0])
MALFORMED = {
    b"garbage": (b'{"event_id": "json, not avro"}', "DecodeError"),
    b"truncated": (GOOD[:-4], "DecodeError"),
    b"unknown": (MAGIC + bytes.fromhex("0102030405060708") + GOOD[10:], "UnknownSchemaError"),
}


def test_malformed_records_read_back_from_the_dlq_with_reason(
    kafka_bootstrap, kafka_settings, make_topics
):
    (topic,) = make_topics("dlq")
    codec = EventCodec()
    with KafkaDeadLetterWriter(kafka_settings, topic) as writer:
        for offset, (key, (value, _)) in enumerate(MALFORMED.items()):
            with pytest.raises(DecodeError) as caught:
                codec.decode(value)
            writer.write(
                build_dead_letter(
                    source_topic="cx.interactions",
                    partition=2,
                    offset=100 + offset,
                    key=key,
                    value=value,
                    timestamp_ms=1_772_439_000_000 + offset,
                    error=caught.value,
                    now_ms=NOW_MS,
                )
            )

    records = consume_all(kafka_bootstrap, topic, expected=3)
    headers = [parse_dead_letter_headers(r.headers) for r in records]
    # Keyed by source topic/partition/offset; the record's own key is a header.
    assert [
        (r.key, h["cx.dlq.source.key"], r.value, r.timestamp)
        for r, h in zip(records, headers, strict=True)
    ] == [
        (
            f"cx.interactions/2/{100 + offset}".encode(),
            key.decode(),
            value,
            1_772_439_000_000 + offset,
        )
        for offset, (key, (value, _)) in enumerate(MALFORMED.items())
    ]
    assert [(h["cx.dlq.stage"], h["cx.dlq.error.class"]) for h in headers] == [
        ("decode", error_class) for _, error_class in MALFORMED.values()
    ]
    assert [h["cx.dlq.source.offset"] for h in headers] == ["100", "101", "102"]
    assert headers[0]["cx.dlq.error.message"].startswith(
        "interaction_event: not Avro single-object encoded"
    )
    assert "truncated or corrupt" in headers[1]["cx.dlq.error.message"]
    assert "0102030405060708" in headers[2]["cx.dlq.error.message"]
    assert {h["cx.dlq.processor.version"] for h in headers} == {pipeline.__version__}
    assert {h["cx.dlq.time"] for h in headers} == {"2026-03-02T08:15:00.000+00:00"}
