"""Send a flush's records as a few Kafka record batches instead of one by one.

A record sent with ``producer.send()`` costs a future, a delivery callback and
Faust's per-record wrapper; at one or two records per input event that was the
largest share of the stream core's cost beyond Faust's own consumer. aiokafka's
batch interface (``create_batch``/``send_batch``) appends records to a batch
builder and returns one future per batch. Records keep their order within a
topic partition: they are appended in order, and aiokafka queues a partition's
next batch only after the previous one has been drained to the broker.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from typing import Any

from pipeline.core.partitioning import murmur2
from pipeline.core_process import BatchResult
from pipeline.core_process import OutgoingTuple as Record


class BatchSender:
    """Groups records per topic partition and hands them to aiokafka in batches."""

    def __init__(self, producer: Any) -> None:
        #: An ``aiokafka.AIOKafkaProducer`` (Faust's, so its flush before an
        #: offset commit also covers these batches).
        self._producer = producer

    async def send(self, records: Iterable[Record]) -> list[asyncio.Future[Any]]:
        """Queue ``records``; the returned futures complete when the broker has them."""
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
            group = by_partition.get((topic, partition))
            if group is None:
                group = by_partition[(topic, partition)] = []
            group.append(record)
        futures: list[asyncio.Future[Any]] = []
        for (topic, partition), group in by_partition.items():
            batch = self._producer.create_batch()
            for _, _, key, value, timestamp_ms, headers in group:
                if (
                    batch.append(
                        key=key, value=value, timestamp=timestamp_ms, headers=list(headers)
                    )
                    is None
                ):
                    futures.append(
                        await self._producer.send_batch(batch, topic, partition=partition)
                    )
                    batch = self._producer.create_batch()
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
            futures.append(await self._producer.send_batch(batch, topic, partition=partition))
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
    """
    if result.outgoing:
        await asyncio.gather(*await sender.send(result.outgoing))
    state_records: list[Record] = [
        (changelog, partition, key.encode(), value, None, ())
        for partition, changes in result.state.items()
        for key, value in changes.items()
    ]
    if state_records:
        await sender.send(state_records)
