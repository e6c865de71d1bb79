"""The batch sender's handling of records the broker refuses, with a producer double.

The double stands for aiokafka's producer at its batch interface: a batch
holds records up to a byte budget (the first record always fits), and a
"broker" refuses a whole batch when one of its records is larger than its
limit, as Kafka does with MESSAGE_TOO_LARGE. Against the real broker:
tests/integration/test_batch_send.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from agents.batch_send import BatchSender, Record, send_result
from pipeline.core_process import BatchResult
from pipeline.dlq import parse_dead_letter_headers


class Batch:
    def __init__(self, budget: int) -> None:
        self.records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self._budget = budget

    def append(self, *, key: Any, value: Any, timestamp: Any, headers: Any) -> object | None:
        size = len(key or b"") + len(value or b"")
        if self.records and size + self.size() > self._budget:
            return None
        self.records.append((key, value, headers))
        return object()

    def size(self) -> int:
        return sum(len(k or b"") + len(v or b"") for k, v, _ in self.records)


class Producer:
    """Keeps what the broker accepted, per topic partition; refuses oversized batches."""

    def __init__(
        self, *, max_message: int, refuse_with: type[Exception] = MessageSizeTooLargeError
    ):
        self.accepted: dict[tuple[str, int], list[tuple[Any, Any, Any]]] = {}
        self.batches = 0
        self._max_message = max_message
        self._refuse_with = refuse_with

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def create_batch(self) -> Batch:
        return Batch(budget=1000)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future:
        self.batches += 1
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        if any(len(v or b"") > self._max_message for _, v, _ in batch.records):
            future.set_exception(self._refuse_with())
        else:
            self.accepted.setdefault((topic, partition), []).extend(batch.records)
            future.set_result(None)
        return future


def _result(outgoing: list[Record], dead_letter_topic: str | None = "t.dlq") -> BatchResult:
    return BatchResult(
        outgoing=outgoing,
        state={0: {"c-1": b"state", "__clock__:0": b"position"}},
        metrics=[],
        latencies=None,  # type: ignore[arg-type]  # not read by send_result
        records=len(outgoing),
        dead_letter_topic=dead_letter_topic,
    )


def test_a_record_the_broker_refuses_becomes_a_headers_only_dead_letter_and_the_rest_is_sent():
    producer = Producer(max_message=500)
    outgoing: list[Record] = [
        ("t.sessions", 0, b"s-1", b"a" * 100, None, ()),
        ("t.sessions", 0, b"s-2", b"b" * 600, None, ()),  # alone in its batch: over budget
        ("t.sessions", 0, b"s-3", b"c" * 100, None, ()),
    ]
    result = _result(outgoing)

    asyncio.run(send_result(BatchSender(producer), result, "t.changelog"))

    assert [k for k, _, _ in producer.accepted[("t.sessions", 0)]] == [b"s-1", b"s-3"]
    ((key, value, headers),) = [
        r for (topic, _), records in producer.accepted.items() if topic == "t.dlq" for r in records
    ]
    reason = parse_dead_letter_headers(headers)
    assert value is None and key is not None and key.startswith(b"t.sessions/0/sha256:")
    assert (reason["cx.dlq.stage"], reason["cx.dlq.error.class"]) == (
        "send",
        "MessageSizeTooLargeError",
    )
    assert (reason["cx.dlq.target.topic"], reason["cx.dlq.value.bytes"]) == ("t.sessions", "600")
    assert result.metrics == [("dead_letter", ("send", "MessageSizeTooLargeError"))]
    assert [k for k, _, _ in producer.accepted[("t.changelog", 0)]] == [b"c-1", b"__clock__:0"]


def test_a_refused_batch_of_several_records_is_sent_again_one_record_at_a_time():
    # A broker whose limit is below the batch budget refuses batches of small records.
    producer = Producer(max_message=150)
    outgoing: list[Record] = [
        ("t.contacts", 1, b"k-1", b"a" * 100, None, ()),
        ("t.contacts", 1, b"k-2", b"b" * 200, None, ()),
        ("t.contacts", 1, b"k-3", b"c" * 100, None, ()),
    ]
    result = _result(outgoing)

    asyncio.run(send_result(BatchSender(producer), result, "t.changelog"))

    assert [k for k, _, _ in producer.accepted[("t.contacts", 1)]] == [b"k-1", b"k-3"]
    assert result.metrics == [("dead_letter", ("send", "MessageSizeTooLargeError"))]


def test_a_retriable_failure_still_fails_the_batch():
    producer = Producer(max_message=10, refuse_with=KafkaTimeoutError)
    result = _result([("t.sessions", 0, b"s-1", b"a" * 100, None, ())])
    with pytest.raises(KafkaTimeoutError):
        asyncio.run(send_result(BatchSender(producer), result, "t.changelog"))
    assert ("t.dlq", 0) not in producer.accepted and ("t.dlq", 1) not in producer.accepted


def test_without_a_dead_letter_topic_a_refused_record_fails_the_batch_as_before():
    producer = Producer(max_message=10)
    result = _result([("t.sessions", 0, b"s-1", b"a" * 100, None, ())], dead_letter_topic=None)
    with pytest.raises(MessageSizeTooLargeError):
        asyncio.run(send_result(BatchSender(producer), result, "t.changelog"))
