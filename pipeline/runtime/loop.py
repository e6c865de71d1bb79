"""The batch loop: read a batch from the group, apply it, commit it, once per batch.

One process, one event loop, three aiokafka clients: the group consumer of the
input topic, one producer (transactional for exactly once) for outputs, state
and (with transactions) offsets, and a group-less consumer that restores state
from the changelog. :class:`pipeline.streaming.StreamHandler` does the work in
between, unchanged. One lock orders the three things that touch the handler:
a batch, a timer tick and a rebalance; each batch or tick is written by
:func:`pipeline.hotpath.checkpoint.commit` before the lock is released, so a
revocation never finds results unwritten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pipeline.hotpath.batch import ConsumedRecord, next_offsets, raw_records
from pipeline.hotpath.changelog import ChangelogReader
from pipeline.hotpath.checkpoint import Checkpoint, commit
from pipeline.hotpath.clients import KafkaOutputs, KafkaPositions
from pipeline.hotpath.config import EXACTLY_ONCE, HotPathConfig
from pipeline.kafka_clients import aiokafka_options
from pipeline.settings import Settings
from pipeline.streaming import MetricsSink, StreamHandler

log = logging.getLogger(__name__)


class HotPath:
    """The worker's consume-apply-commit loop over one :class:`StreamHandler`."""

    def __init__(
        self,
        settings: Settings,
        config: HotPathConfig,
        *,
        metrics: MetricsSink | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.handler = StreamHandler(settings, metrics=metrics)
        self._on_batch = on_batch
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        #: Input partitions whose state is loaded into the handler.
        self.loaded: set[int] = set()
        self.batches = 0
        self._consumer: Any = None
        self._producer: Any = None
        self._restorer: Any = None
        self._outputs: KafkaOutputs | None = None
        self._positions: KafkaPositions | None = None
        self._changelog: ChangelogReader | None = None

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Start the producer first, then join the group.

        With transactions, the producer's start fences a predecessor with the
        same transactional id and aborts its open transaction, so the offsets
        and state the group then reads are the committed ones.
        """
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.abc import ConsumerRebalanceListener

        config = self.config
        kafka = self.settings.kafka
        worker = self.settings.worker
        exactly_once = config.guarantee == EXACTLY_ONCE
        isolation = "read_committed" if exactly_once else "read_uncommitted"
        self._producer = AIOKafkaProducer(
            **aiokafka_options(kafka),
            client_id=f"{config.group_id}-hotpath",
            acks="all",
            linger_ms=5,
            max_batch_size=256 * 1024,
            transactional_id=config.transactional_id if exactly_once else None,
        )
        await self._producer.start()
        self._restorer = AIOKafkaConsumer(
            **aiokafka_options(kafka),
            group_id=None,
            enable_auto_commit=False,
            isolation_level=isolation,
        )
        await self._restorer.start()
        self._changelog = ChangelogReader(self._restorer, config.changelog_topic)
        self._outputs = KafkaOutputs(
            self._producer, input_topic=config.input_topic, group_id=config.group_id
        )
        self._consumer = AIOKafkaConsumer(
            **aiokafka_options(kafka),
            group_id=config.group_id,
            client_id=f"{config.group_id}-hotpath",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=isolation,
            session_timeout_ms=int(worker.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(worker.heartbeat_interval_seconds * 1000),
            fetch_max_wait_ms=100,
        )
        self._positions = KafkaPositions(self._consumer, input_topic=config.input_topic)
        hot_path = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await hot_path.on_revoked(tp.partition for tp in revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await hot_path.on_assigned(tp.partition for tp in assigned)

        await self._consumer.start()
        self._consumer.subscribe([config.input_topic], listener=Listener())

    async def run(self) -> None:
        """Consume until :meth:`stop`; an error in a commit ends the loop with it."""
        consumer = self._consumer
        timeout_ms = int(self.config.poll_timeout_s * 1000)
        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=self.config.max_batch)
            if batch:
                await self.process(batch)

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """Leave the group and flush the producer (a batch is never half written)."""
        async with self._lock:
            for client in (self._consumer, self._restorer, self._producer):
                if client is not None:
                    await client.stop()

    # -- batches and ticks ------------------------------------------------------

    async def process(self, batch: Mapping[Any, Sequence[ConsumedRecord]]) -> int:
        """Apply one ``getmany`` result and commit it; returns the records applied."""
        async with self._lock:
            # A batch fetched before a revocation may hold records of a
            # partition this worker no longer owns: its new owner applies them.
            loaded = self.loaded
            records = raw_records({tp: rs for tp, rs in batch.items() if tp.partition in loaded})
            handle = self.handler.handle
            for record in records:
                handle(record)
            drained = self.handler.drain()
            await self._commit(Checkpoint(drained.outgoing, drained.state, next_offsets(records)))
            self.batches += 1
        if self._on_batch is not None:
            self._on_batch(len(records))
        return len(records)

    async def tick(self) -> None:
        """Advance the loaded partitions' clocks to wall time (live mode) and commit."""
        async with self._lock:
            self.handler.tick(sorted(self.loaded))
            drained = self.handler.drain()
            await self._commit(Checkpoint(drained.outgoing, drained.state))

    async def _commit(self, checkpoint: Checkpoint) -> None:
        assert self._outputs is not None and self._positions is not None, "start() first"
        await commit(
            checkpoint,
            outputs=self._outputs,
            positions=self._positions,
            changelog_topic=self.config.changelog_topic,
            guarantee=self.config.guarantee,
        )

    # -- partition lifecycle ----------------------------------------------------

    async def on_assigned(self, partitions: Iterable[int]) -> None:
        """Restore newly assigned partitions from the changelog before their first batch."""
        assert self._changelog is not None, "start() first"
        async with self._lock:
            new = sorted(set(partitions) - self.loaded)
            restored = await self._changelog.read(new)
            for partition in new:
                customers = self.handler.load_partition(partition, restored[partition].items())
                self.loaded.add(partition)
                log.info("partition %s: restored %s customers", partition, customers)

    async def on_revoked(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions; every batch taken is already committed."""
        async with self._lock:
            for partition in partitions:
                self.handler.drop_partition(partition)
                self.loaded.discard(partition)
