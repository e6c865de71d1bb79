"""aiokafka behind the commit function's two seams (:mod:`pipeline.runtime.checkpoint`).

Public aiokafka API only: ``create_batch``/``send_batch``, ``send``,
``partitions_for``, the transaction calls, ``commit``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.core.partitioning import murmur2

if TYPE_CHECKING:
    from pipeline.runtime.checkpoint import Queued
    from pipeline.streaming import Outgoing

log = logging.getLogger(__name__)


class KafkaOutputs:
    """An ``AIOKafkaProducer`` (transactional for exactly once) as :class:`Outputs`."""

    def __init__(self, producer: Any, *, input_topic: str, group_id: str) -> None:
        self._producer = producer
        self._input_topic = input_topic
        self._group_id = group_id

    async def send_many(self, records: Sequence[Outgoing]) -> Queued:
        """Queue ``records`` as one Kafka batch per topic partition, in their order.

        ``producer.send`` per record costs ~20 µs of Python (a coroutine, the
        partitioner, the accumulator's bookkeeping and a future per record);
        appending to a ``BatchBuilder`` and sending it whole costs a few, and
        the worker writes ~1.5 records (outputs and states) per event. A record
        without an explicit partition goes where Kafka's default partitioner
        puts its key (murmur2 of the key over the topic's partitions, the
        compiled copy the replay routes with); a record without a key goes
        through ``send``, which picks a partition for it.
        """
        from pipeline.runtime.checkpoint import Queued

        queued = Queued()
        by_partition: dict[tuple[str, int], list[Outgoing]] = {}
        counts: dict[str, int] = {}
        for record in records:
            partition = record.partition
            if partition is None:
                if record.key is None:
                    await self._send_alone(record, queued)
                    continue
                count = counts.get(record.topic)
                if count is None:
                    count = counts[record.topic] = len(
                        await self._producer.partitions_for(record.topic)
                    )
                partition = (murmur2(record.key) & 0x7FFFFFFF) % count
            by_partition.setdefault((record.topic, partition), []).append(record)
        for (topic, partition), group in by_partition.items():
            await self._send_batches(topic, partition, group, queued)
        return queued

    async def _send_batches(
        self, topic: str, partition: int, records: Sequence[Outgoing], queued: Queued
    ) -> None:
        producer = self._producer
        batch = producer.create_batch()
        members: list[Outgoing] = []
        for record in records:
            headers = list(record.headers) if record.headers else []
            if (
                batch.append(
                    key=record.key,
                    value=record.value,
                    timestamp=record.timestamp_ms,
                    headers=headers,
                )
                is not None
            ):
                members.append(record)
                continue
            # The batch is full (its size is the producer's max_batch_size).
            if members:
                queued.sent.append(
                    (members, await producer.send_batch(batch, topic, partition=partition))
                )
            batch, members = producer.create_batch(), []
            if (
                batch.append(
                    key=record.key,
                    value=record.value,
                    timestamp=record.timestamp_ms,
                    headers=headers,
                )
                is None
            ):
                # Larger than a whole batch: ``send`` checks it against the
                # request size and refuses it, or sends it alone.
                await self._send_alone(record, queued)
                batch = producer.create_batch()
                continue
            members.append(record)
        if members:
            queued.sent.append(
                (members, await producer.send_batch(batch, topic, partition=partition))
            )

    async def _send_alone(self, record: Outgoing, queued: Queued) -> None:
        try:
            ack = await self.send(
                record.topic,
                record.key,
                record.value,
                partition=record.partition,
                timestamp_ms=record.timestamp_ms,
                headers=record.headers,
            )
        except Exception as exc:  # refused by the client's own checks, before sending
            queued.refused.append((record, exc))
            return
        queued.sent.append(([record], ack))

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        future: Awaitable[Any] = await self._producer.send(
            topic,
            value=value,
            key=key,
            partition=partition,
            timestamp_ms=timestamp_ms,
            headers=list(headers) if headers else None,
        )
        return future

    async def begin_transaction(self) -> None:
        await self._producer.begin_transaction()

    async def commit_transaction(
        self, offsets: Mapping[int, int], others: Mapping[str, Mapping[int, int]]
    ) -> None:
        tps = _topic_partitions(self._input_topic, offsets, others)
        if tps:
            await self._producer.send_offsets_to_transaction(tps, self._group_id)
        await self._producer.commit_transaction()

    async def abort_transaction(self) -> None:
        await self._producer.abort_transaction()


class KafkaPositions:
    """An ``AIOKafkaConsumer`` in a group as :class:`Positions`.

    At least once, the group's committed offsets are a hint, not the truth: a
    partition resumes from the position stored with its state
    (:meth:`pipeline.runtime.loop.StreamLoop.on_assigned`). So a commit the group
    refuses because it moved on (this worker was too slow and lost its
    partitions, or a rebalance started) is logged, not raised: the partitions'
    new owner resumes from the state, and nothing is lost or applied twice.
    """

    def __init__(self, consumer: Any, *, input_topic: str) -> None:
        self._consumer = consumer
        self._input_topic = input_topic

    async def commit(
        self, offsets: Mapping[int, int], others: Mapping[str, Mapping[int, int]]
    ) -> None:
        from aiokafka.errors import CommitFailedError, IllegalStateError

        try:
            await self._consumer.commit(_topic_partitions(self._input_topic, offsets, others))
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("the group refused an offset commit (%s); the state holds it", exc)


def _topic_partitions(
    topic: str, offsets: Mapping[int, int], others: Mapping[str, Mapping[int, int]]
) -> dict[Any, int]:
    from aiokafka import TopicPartition

    tps = {TopicPartition(topic, partition): offset for partition, offset in offsets.items()}
    for other, positions in others.items():
        tps.update({TopicPartition(other, p): offset for p, offset in positions.items()})
    return tps
