"""Fetch input records the Faust consumer did not deliver.

Why this exists: around a rebalance or a restart, faust-streaming's fetcher can
skip records. It seeks the stream partitions back to the committed offsets after
table recovery, while records fetched before that seek are still on their way;
when the next record it reads is more than one offset ahead of the last, it
books the offsets in between as a "gap" and acknowledges them as if they had
been processed. A skipped event then never reaches the agent, and the next
offset commit hides the loss for good. (Seen in this project's SIGKILL restart
test: one event in a few hundred runs' worth of restarts.)

The agent therefore does not trust delivery order. The state table stores, per
partition, the offset of the last record whose effects it holds
(``StreamHandler.applied_offsets``). A record more than one offset past it means
a hole; :class:`MissedRecordFetcher` reads the hole straight from the broker, and
the agent applies those records first, in offset order. A hole that holds no
records (transaction markers, a truncated log) comes back empty and costs one
fetch.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.kafka_clients import aiokafka_options
from pipeline.settings import KafkaSettings
from pipeline.streaming import RawRecord

log = logging.getLogger(__name__)

#: A hole that cannot be read within this time stops the agent rather than lose records.
FETCH_TIMEOUT_SECONDS = 60.0
#: The broker answers a fetch after at most this long even with nothing new.
FETCH_MAX_WAIT_MS = 20


class MissedRecordFetcher:
    """A group-less consumer that reads given offset ranges of the input topic."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str = "cxstream-refetch") -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None

    async def fetch(self, topic: str, partition: int, start: int, end: int) -> list[RawRecord]:
        """Records with ``start <= offset < end`` of one partition, in offset order.

        ``end`` must not lie past the log's end (see :meth:`end_offset`).
        """
        consumer = await self._started()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        records: list[RawRecord] = []
        deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"could not read offsets {start}..{end - 1} of {topic}[{partition}] "
                    f"within {FETCH_TIMEOUT_SECONDS:.0f}s"
                )
            batch = await consumer.getmany(tp, timeout_ms=500)
            for message in batch.get(tp, []):
                if message.offset < start:
                    continue  # the log starts later than asked: read from its start
                if message.offset >= end:
                    break
                records.append(
                    RawRecord(
                        topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                        key=message.key,
                        value=message.value,
                        timestamp_ms=message.timestamp,
                        headers=[(name, bytes(value or b"")) for name, value in message.headers],
                    )
                )
            if records and records[-1].offset >= end - 1:
                break
        return records

    async def read_partition(
        self, topic: str, partition: int
    ) -> list[tuple[bytes | None, bytes | None]]:
        """Every (key, value) of one partition from its start to its end now, in offset order."""
        consumer = await self._started()
        tp = TopicPartition(topic, partition)
        end = await self.end_offset(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"could not read {topic}[{partition}] to its end ({end}) "
                    f"within {FETCH_TIMEOUT_SECONDS:.0f}s"
                )
            batch = await consumer.getmany(tp, timeout_ms=500)
            for message in batch.get(tp, []):
                if message.offset >= end:
                    break
                records.append((message.key, message.value))
        return records

    async def end_offset(self, topic: str, partition: int) -> int:
        """The offset the next record of the partition will get (its log end)."""
        consumer = await self._started()
        tp = TopicPartition(topic, partition)
        ends = await asyncio.wait_for(consumer.end_offsets([tp]), timeout=FETCH_TIMEOUT_SECONDS)
        return int(ends[tp])

    async def end_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        """The log ends of several partitions, in one request to the broker."""
        consumer = await self._started()
        tps = [TopicPartition(topic, partition) for partition in partitions]
        ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout=FETCH_TIMEOUT_SECONDS)
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **aiokafka_options(self._kafka),
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # Every read here is a short range someone waits for (a partition
                # load checks one record; a takeover loads several in a row).
                # With aiokafka's 500 ms a fetch still pending for the previous
                # range delayed each read by up to that much.
                fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            )
            await asyncio.wait_for(consumer.start(), timeout=FETCH_TIMEOUT_SECONDS)
            self._consumer = consumer
        return self._consumer
