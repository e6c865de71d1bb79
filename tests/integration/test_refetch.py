"""The worker's own reader for input records the Faust consumer skipped."""

from __future__ import annotations

import asyncio

from kafka import KafkaProducer

from agents.refetch import MissedRecordFetcher
from pipeline.settings import KafkaSettings


def _fetch(bootstrap: str, topic: str, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
    async def run() -> list[tuple[int, bytes, bytes]]:
        fetcher = MissedRecordFetcher(KafkaSettings(bootstrap=bootstrap))
        try:
            records = await fetcher.fetch(topic, 0, start, end)
        finally:
            await fetcher.close()
        return [(r.offset, r.key or b"", r.value or b"") for r in records]

    return asyncio.run(run())


def test_a_range_of_offsets_comes_back_in_order_with_keys_values_and_headers(
    kafka_bootstrap: str, make_topics
) -> None:
    (topic,) = make_topics("in")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for n in range(8):
        producer.send(topic, key=f"c-{n}".encode(), value=f"v{n}".encode(), partition=0)
    producer.send(topic, key=b"h", value=b"with header", headers=[("cx-control", b"x")])
    producer.flush()
    producer.close()

    assert _fetch(kafka_bootstrap, topic, 3, 6) == [
        (3, b"c-3", b"v3"),
        (4, b"c-4", b"v4"),
        (5, b"c-5", b"v5"),
    ]

    async def headers() -> list[tuple[str, bytes]]:
        fetcher = MissedRecordFetcher(KafkaSettings(bootstrap=kafka_bootstrap))
        try:
            (record,) = await fetcher.fetch(topic, 0, 8, 9)
        finally:
            await fetcher.close()
        return list(record.headers)

    assert asyncio.run(headers()) == [("cx-control", b"x")]


def test_a_hole_that_holds_only_transaction_markers_comes_back_empty(
    kafka_bootstrap: str, make_topics
) -> None:
    (topic,) = make_topics("in")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-tx")
    producer.init_transactions()
    for batch in (("a", "b"), ("c", "d")):
        producer.begin_transaction()
        for value in batch:
            producer.send(topic, key=b"k", value=value.encode(), partition=0)
        producer.commit_transaction()
    producer.close()

    # Offsets: a=0 b=1 [commit marker 2] c=3 d=4 [commit marker 5].
    assert _fetch(kafka_bootstrap, topic, 2, 3) == []
    assert [offset for offset, _, _ in _fetch(kafka_bootstrap, topic, 0, 5)] == [0, 1, 3, 4]
