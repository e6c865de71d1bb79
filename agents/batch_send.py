"""Send a flush's records as a few Kafka record batches instead of one by one.

A record sent with ``producer.send()`` costs a future, a delivery callback and
Faust's per-record wrapper; at one or two records per input event that was the
largest share of the stream core's cost beyond Faust's own consumer. aiokafka's
batch interface (``create_batch``/``send_batch``) appends records to a batch
builder and returns one future per batch. Records keep their order within a
topic partition: they are appended in order, and aiokafka queues a partition's
next batch only after the previous one has been drained to the broker.

A record the broker refuses for good (too large, corrupt, a timestamp out of
range) must not stop the worker: it would be refused again after every
restart (issue 12). :meth:`BatchSender.deliver` sends a refused batch of
several records again one record per batch, and replaces each record the
broker still refuses by a headers-only dead letter (stage ``send``,
:func:`pipeline.dlq.build_unsent_dead_letter`). Those re-sent records land
after the partition's later batches of the same send, so an older record of a
key can overwrite a newer one there; with the size caps of the stream core a
multi-record batch is refused only by a broker whose ``max.message.bytes`` is
below the producer's batch size. Any other failure fails the batch as before,
and a restart recovers exactly.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from typing import Any

from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from pipeline.core.partitioning import murmur2
from pipeline.core_process import BatchResult
from pipeline.core_process import OutgoingTuple as Record
from pipeline.dlq import build_unsent_dead_letter

log = logging.getLogger(__name__)

#: Failures that concern the records of a batch, not the connection or the
#: cluster: sending the same bytes again cannot succeed. Kafka's INVALID_RECORD
#: (87, e.g. a null key on a compacted topic) is not among them: aiokafka 0.12
#: maps codes it does not know to UnknownError and drops the code, so it cannot
#: be told from a broker fault and fails the batch.
RECORD_ERRORS: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,  # MESSAGE_TOO_LARGE (10)
    RecordListTooLargeError,  # RECORD_LIST_TOO_LARGE (18)
    RecordTooLargeError,  # the client's own check
    CorruptRecordException,  # CORRUPT_MESSAGE (2)
    InvalidTimestampError,  # INVALID_TIMESTAMP (32)
)


class BatchSender:
    """Groups records per topic partition and hands them to aiokafka in batches."""

    def __init__(self, producer: Any) -> None:
        #: An ``aiokafka.AIOKafkaProducer`` (Faust's, so its flush before an
        #: offset commit also covers these batches).
        self._producer = producer

    async def send(self, records: Iterable[Record]) -> list[asyncio.Future[Any]]:
        """Queue ``records``; the returned futures complete when the broker has them."""
        return [future for future, _ in await self._send_batches(records)]

    async def deliver(
        self, records: Iterable[Record], dead_letter_topic: str | None
    ) -> list[tuple[Record, Exception]]:
        """Send ``records`` and wait for the broker's acknowledgement.

        Returns the records the broker refused for good (:data:`RECORD_ERRORS`)
        with their errors, once each is replaced by a dead letter in
        ``dead_letter_topic``. Any other failure, or a refusal without a
        dead-letter topic, raises.
        """
        sent = await self._send_batches(records)
        outcomes = await asyncio.gather(*(future for future, _ in sent), return_exceptions=True)
        refused: list[tuple[Record, Exception]] = []
        again: list[Record] = []
        for (_, group), outcome in zip(sent, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if dead_letter_topic is None or not isinstance(outcome, RECORD_ERRORS):
                    raise outcome
                if len(group) == 1:
                    refused.append((group[0], outcome))
                else:
                    again.extend(group)
        if again:
            # One record per batch, to find the ones the broker refuses.
            singles = [(await self._send_batches([record]))[0] for record in again]
            outcomes = await asyncio.gather(*(f for f, _ in singles), return_exceptions=True)
            for (_, (record,)), outcome in zip(singles, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, RECORD_ERRORS):
                        raise outcome
                    refused.append((record, outcome))
        if refused:
            assert dead_letter_topic is not None
            now_ms = int(time.time() * 1000)
            letters: list[Record] = []
            for (topic, partition, key, value, _, _), error in refused:
                log.error(
                    "a record of %s bytes for %s partition %s was refused by the broker "
                    "(%r); sent to %s as a dead letter instead",
                    len(value or b""),
                    topic,
                    partition,
                    error,
                    dead_letter_topic,
                )
                letter = build_unsent_dead_letter(
                    topic=topic,
                    partition=partition,
                    key=key,
                    value=value,
                    error=error,
                    stage="send",
                    now_ms=now_ms,
                )
                letters.append((dead_letter_topic, None, letter.key, None, None, letter.headers))
            await asyncio.gather(*await self.send(letters))
        return refused

    async def _send_batches(
        self, records: Iterable[Record]
    ) -> list[tuple[asyncio.Future[Any], list[Record]]]:
        """Queue ``records`` as batches; each batch's future with its records.

        The records come back with their partition filled in.
        """
        by_partition: dict[tuple[str, int], list[Record]] = {}
        partition_counts: dict[str, int] = {}
        for record in records:
            topic, partition, key = record[0], record[1], record[2]
            if partition is None:
                count = partition_counts.get(topic)
                if count is None:
                    count = partition_counts[topic] = len(
                        await self._producer.partitions_for(topic)
                    )
                partition = _default_partition(key, count)
                record = (topic, partition, *record[2:])
            group = by_partition.get((topic, partition))
            if group is None:
                group = by_partition[(topic, partition)] = []
            group.append(record)
        futures: list[tuple[asyncio.Future[Any], list[Record]]] = []
        for (topic, partition), group in by_partition.items():
            batch = self._producer.create_batch()
            in_batch: list[Record] = []
            for record in group:
                _, _, key, value, timestamp_ms, headers = record
                if (
                    batch.append(
                        key=key, value=value, timestamp=timestamp_ms, headers=list(headers)
                    )
                    is None
                ):
                    futures.append(
                        (
                            await self._producer.send_batch(batch, topic, partition=partition),
                            in_batch,
                        )
                    )
                    batch = self._producer.create_batch()
                    in_batch = []
                    if (
                        batch.append(
                            key=key, value=value, timestamp=timestamp_ms, headers=list(headers)
                        )
                        is None
                    ):
                        raise ValueError(
                            f"a record of {len(value or b'')} bytes for {topic} does not fit "
                            "in an empty batch (producer_max_batch_size)"
                        )
                in_batch.append(record)
            futures.append(
                (await self._producer.send_batch(batch, topic, partition=partition), in_batch)
            )
        return futures


def _default_partition(key: bytes | None, count: int) -> int:
    """The partition Kafka's default partitioner picks: murmur2 of the key, else any."""
    if key is None:
        return random.randrange(count)
    return (murmur2(key) & 0x7FFFFFFF) % count


async def send_result(sender: BatchSender, result: BatchResult, changelog: str) -> None:
    """Send a batch's outputs, wait for Kafka's acks, then its state (position last).

    The order that makes restarts exact (``pipeline/streaming.py``): a state
    is only written once the outputs it stands for are in Kafka. The state
    goes to the changelog partition of its input partition, in the order the
    handler gave it, so a partition's position never lands before its states.

    An output the broker refuses for good is replaced by a dead letter to the
    result's ``dead_letter_topic`` and counted in ``result.metrics`` (stage
    ``send``), which the worker repeats on its registry after this returns.
    """
    if result.outgoing:
        refused = await sender.deliver(result.outgoing, result.dead_letter_topic)
        for _, error in refused:
            result.metrics.append(("dead_letter", ("send", type(error).__name__)))
    state_records: list[Record] = [
        (changelog, partition, key.encode(), value, None, ())
        for partition, changes in result.state.items()
        for key, value in changes.items()
    ]
    if state_records:
        await sender.send(state_records)
