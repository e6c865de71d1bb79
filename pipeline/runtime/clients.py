"""aiokafka behind the commit function's two seams (:mod:`pipeline.runtime.checkpoint`).

Public aiokafka API only: ``send``, the transaction calls, ``commit``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)


class KafkaOutputs:
    """An ``AIOKafkaProducer`` (transactional for exactly once) as :class:`Outputs`."""

    def __init__(self, producer: Any, *, input_topic: str, group_id: str) -> None:
        self._producer = producer
        self._input_topic = input_topic
        self._group_id = group_id

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

    async def commit_transaction(self, offsets: Mapping[int, int]) -> None:
        if offsets:
            await self._producer.send_offsets_to_transaction(
                _topic_partitions(self._input_topic, offsets), self._group_id
            )
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

    async def commit(self, offsets: Mapping[int, int]) -> None:
        from aiokafka.errors import CommitFailedError, IllegalStateError

        try:
            await self._consumer.commit(_topic_partitions(self._input_topic, offsets))
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("the group refused an offset commit (%s); the state holds it", exc)


def _topic_partitions(topic: str, offsets: Mapping[int, int]) -> dict[Any, int]:
    from aiokafka import TopicPartition

    return {TopicPartition(topic, partition): offset for partition, offset in offsets.items()}
