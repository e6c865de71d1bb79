"""The agent's batch sender against the real broker."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from agents.batch_send import BatchSender, Record, send_result
from pipeline.core_process import BatchResult
from pipeline.dlq import parse_dead_letter_headers
from pipeline.metrics import LatencyCounts
from tests.integration.worker_harness import read_topic


def _send(bootstrap: str, records: list[Record], max_batch_size: int = 16384) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=max_batch_size)
        await producer.start()
        try:
            await asyncio.gather(*await BatchSender(producer).send(records))
        finally:
            await producer.stop()

    asyncio.run(run())


def test_keyed_records_land_where_kafkas_default_partitioner_puts_them(
    kafka_bootstrap: str, make_topics
) -> None:
    ours, reference = make_topics("ours", "reference", partitions=6)
    keys = [f"session-{n}".encode() for n in range(40)]
    _send(kafka_bootstrap, [(ours, None, key, b"v", None, ()) for key in keys])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for key in keys:
        producer.send(reference, key=key, value=b"v")
    producer.flush()
    producer.close()

    def placement(topic: str) -> dict[bytes, int]:
        return {record.key: record.partition for record in read_topic(kafka_bootstrap, topic)}

    assert placement(ours) == placement(reference)
    assert len(set(placement(ours).values())) > 1


def test_order_headers_and_tombstones_survive_across_many_batches(
    kafka_bootstrap: str, make_topics
) -> None:
    (topic,) = make_topics("out", partitions=2)
    records: list[Record] = [
        (topic, n % 2, f"k{n}".encode(), b"x" * 300, None, [("n", str(n).encode())])
        for n in range(200)
    ]
    records.append((topic, 1, b"gone", None, None, ()))
    # 1 KiB batches: the 60 KB of records need many batches per partition.
    _send(kafka_bootstrap, records, max_batch_size=1024)

    stored = read_topic(kafka_bootstrap, topic)
    for partition in (0, 1):
        in_partition = [r for r in stored if r.partition == partition]
        expected = [f"k{n}".encode() for n in range(partition, 200, 2)]
        if partition == 1:
            expected.append(b"gone")
        assert [r.key for r in in_partition] == expected
    headers = {r.key: dict(r.headers) for r in stored}
    assert headers[b"k7"] == {"n": b"7"}
    assert next(r.value for r in stored if r.key == b"gone") is None


def test_a_record_the_broker_refuses_as_too_large_becomes_a_dead_letter_and_the_rest_lands(
    kafka_bootstrap: str, make_topics, unique_prefix: str
) -> None:
    (dlq,) = make_topics("dlq")
    small = f"{unique_prefix}.small-messages"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        # The broker refuses any batch over 20 kB on this topic (MESSAGE_TOO_LARGE).
        admin.create_topics([NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "20000"})])
    finally:
        admin.close()
    outgoing: list[Record] = [
        (small, 0, b"before", b"a" * 100, None, ()),
        (small, 0, b"huge", b"h" * 50_000, None, ()),
        (small, 0, b"after", b"b" * 100, None, ()),
    ]
    result = BatchResult(
        outgoing=outgoing,
        state={},
        metrics=[],
        latencies=LatencyCounts(),
        records=3,
        dead_letter_topic=dlq,
    )

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await send_result(BatchSender(producer), result, "unused-changelog")
        finally:
            await producer.stop()

    asyncio.run(run())

    assert [r.key for r in read_topic(kafka_bootstrap, small)] == [b"before", b"after"]
    (letter,) = read_topic(kafka_bootstrap, dlq)
    reason = parse_dead_letter_headers(letter.headers)
    assert letter.value is None
    assert (reason["cx.dlq.stage"], reason["cx.dlq.error.class"]) == (
        "send",
        "MessageSizeTooLargeError",
    )
    assert (reason["cx.dlq.target.topic"], reason["cx.dlq.value.bytes"]) == (small, "50000")
    assert result.metrics == [("dead_letter", ("send", "MessageSizeTooLargeError"))]
