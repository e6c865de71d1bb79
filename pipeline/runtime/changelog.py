"""State restored from the compacted changelog topic the commit function writes.

Why not a Faust table: the worker used one only as a place to keep bytes its
stream core wrote to the changelog itself, and Faust's table recovery was where
a takeover hung (about one failover run in five waited for changelog records it
never received, for 30 s to minutes; faust-streaming#74, #155, #176 and #651 are
the same family). The loop reads the changelog itself when a partition is
assigned, with its own group-less consumer.

Input partition ``p``'s customer states and position live on changelog
partition ``p`` (:mod:`pipeline.runtime.checkpoint`); a newly assigned input
partition reads its changelog partition from the start to its end, the last
value per key winning and a tombstone deleting. With exactly once the reader
is ``read_committed``: an aborted batch's state is not restored, as its
offsets were not committed either.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from pipeline.errors import BrokerError
from pipeline.settings import KafkaSettings
from pipeline.topics import TopicSpec

#: How long one restore may take before the worker gives up (a broker gone).
RESTORE_TIMEOUT_S = 120.0


def process_group(kafka: KafkaSettings) -> str:
    """The stream core's consumer group: ``cxstream-<topic prefix>-process``."""
    return f"cxstream-{kafka.topic_prefix}-process"


def state_changelog_topic(kafka: KafkaSettings) -> str:
    """The compacted topic that holds each customer's state and each partition's position.

    The name is the one Faust gave the worker's state table's changelog when the
    worker had one, so a deployment's existing state is read as before.
    """
    return f"{process_group(kafka)}-customer-state-changelog"


def identity_changelog_topic(kafka: KafkaSettings) -> str:
    """The compacted topic of the identity processors (issue 16): identity partition
    p's identifiers (``<kind>:<value>``) and position on partition p."""
    return f"{process_group(kafka)}-identity-state-changelog"


def state_changelog_spec(kafka: KafkaSettings) -> TopicSpec:
    """One partition per input partition (state partition p belongs to input partition p),
    compacted and never deleted by age: the latest value of every key is the state."""
    return TopicSpec(
        partitions=kafka.input_partitions,
        retention_ms=-1,
        cleanup_policy="compact",
        replication_factor=kafka.replication_factor,
    )


def fold(
    records: Iterable[tuple[int, bytes | None, bytes | None]],
) -> dict[int, dict[bytes, bytes]]:
    """partition -> {key -> last value}, from ``(partition, key, value)`` in log order.

    A ``None`` value (a tombstone: an evicted customer) deletes the key.
    """
    state: dict[int, dict[bytes, bytes]] = {}
    for partition, key, value in records:
        if key is None:
            continue
        entries = state.setdefault(partition, {})
        if value is None:
            entries.pop(key, None)
        else:
            entries[key] = value
    return state


class ChangelogReader:
    """A group-less aiokafka consumer that reads changelog partitions to their end."""

    def __init__(self, consumer: Any, topic: str) -> None:
        #: An ``AIOKafkaConsumer`` created without a group and without topics.
        self._consumer = consumer
        self._topic = topic

    async def read(self, partitions: Iterable[int]) -> dict[int, dict[bytes, bytes]]:
        """The stored entries of each of ``partitions`` (an empty dict when none)."""
        from aiokafka import TopicPartition

        tps = [TopicPartition(self._topic, partition) for partition in sorted(partitions)]
        restored: dict[int, dict[bytes, bytes]] = {tp.partition: {} for tp in tps}
        if not tps:
            return restored
        consumer = self._consumer
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        log: list[tuple[int, bytes | None, bytes | None]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"restoring {self._topic} partitions {[tp.partition for tp in tps]} "
                    f"took over {RESTORE_TIMEOUT_S:.0f}s"
                )
            batch = await consumer.getmany(*tps, timeout_ms=200)
            for tp, records in batch.items():
                log.extend((tp.partition, record.key, record.value) for record in records)
        restored.update(fold(log))
        return restored
