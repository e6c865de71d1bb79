"""The batch loop: read a batch from the group, apply it, commit it, once per batch.

One process, one event loop, three aiokafka clients: the group consumer of the
input topic, one producer (idempotent; transactional for exactly once) for
outputs, state and (with transactions) offsets, and a group-less consumer that
restores state from the changelog and checks stored positions against the input
log. :class:`pipeline.streaming.StreamHandler` does the work in between. One
lock orders the three things that touch the handler: a batch, a timer tick and
a rebalance; each batch or tick is written by
:func:`pipeline.runtime.checkpoint.commit` before the lock is released, so a
revocation never finds results unwritten.

Where a partition resumes: from the position stored with its state (the offset
after the last record whose effects the state holds), not from the group's
committed offset. At least once, the offsets are committed after the state, so
the two differ only when a worker died in between (the state is ahead: the
records in between are not applied twice) or when someone moved the group's
offsets (the state is behind: the records in between are applied, not
skipped). Exactly once, the two are written in one transaction and agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from pipeline.identity_streaming import IdentityHandler
from pipeline.kafka_clients import aiokafka_options
from pipeline.runtime.batch import ConsumedRecord, next_offsets_by_topic, raw_records
from pipeline.runtime.changelog import ChangelogReader
from pipeline.runtime.checkpoint import Checkpoint, commit
from pipeline.runtime.clients import KafkaOutputs, KafkaPositions
from pipeline.runtime.config import EXACTLY_ONCE, LoopConfig
from pipeline.settings import Settings
from pipeline.sink.pseudonym import pseudonym_key
from pipeline.stream_records import IdentityMetricsSink
from pipeline.stream_state import record_crc
from pipeline.streaming import MetricsSink, PartitionGauge, StreamHandler
from pipeline.topics import DLQ

log = logging.getLogger(__name__)

#: Records handled between two yields to the event loop.
HANDLE_CHUNK = 1000


class StreamLoop:
    """The worker's consume-apply-commit loop over one :class:`StreamHandler`."""

    def __init__(
        self,
        settings: Settings,
        config: LoopConfig,
        *,
        metrics: MetricsSink | None = None,
        identity_metrics: IdentityMetricsSink | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        wired = config.identity_topic is not None
        self.handler = StreamHandler(
            settings, metrics=metrics, identity=wired, identity_metrics=identity_metrics
        )
        #: The identity processors of the ``identity`` partitions held (issue 16).
        self.identity = IdentityHandler(
            settings,
            pseudonym_key=pseudonym_key(settings.sql) if wired else None,
            metrics=metrics,
            identity_metrics=identity_metrics,
        )
        self._on_batch = on_batch
        self._dead_letter_topic = settings.kafka.topic(DLQ)
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._failure: BaseException | None = None
        #: Input partitions whose state is loaded into the handler.
        self.loaded: set[int] = set()
        #: Set after the first batch following an assignment was logged.
        self._first_batch_logged = False
        self._consumer: Any = None
        self._producer: Any = None
        self._restorer: Any = None
        self._outputs: KafkaOutputs | None = None
        self._positions: KafkaPositions | None = None
        self._changelog: ChangelogReader | None = None
        self._identity_changelog: ChangelogReader | None = None

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Start the producer first, then join the group.

        With transactions, the producer's start fences a predecessor with the
        same transactional id and aborts its open transaction, so the offsets
        and state the group then reads are the committed ones.
        """
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.abc import ConsumerRebalanceListener
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor

        config = self.config
        kafka = self.settings.kafka
        worker = self.settings.worker
        exactly_once = config.guarantee == EXACTLY_ONCE
        isolation = "read_committed" if exactly_once else "read_uncommitted"
        self._producer = AIOKafkaProducer(
            **aiokafka_options(kafka),
            client_id=f"{config.group_id}-producer",
            acks="all",
            # Retries keep a partition's order and never write a record twice.
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
            # Room for the largest record the stream core sends (its size cap)
            # with its headers; the broker's own limit still applies.
            max_request_size=max(1_048_576, self.settings.limits.max_record_bytes + 65_536),
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
        if config.identity_changelog_topic is not None:
            self._identity_changelog = ChangelogReader(
                self._restorer, config.identity_changelog_topic
            )
        self._outputs = KafkaOutputs(
            self._producer, input_topic=config.input_topic, group_id=config.group_id
        )
        session_timeout_ms = int(worker.session_timeout_seconds * 1000)
        self._consumer = AIOKafkaConsumer(
            **aiokafka_options(kafka),
            group_id=config.group_id,
            client_id=f"{config.group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=isolation,
            # Failover (docs/ops.md): the group notices a dead worker after the
            # session timeout, and a member killed during a rebalance is dropped
            # after the rebalance timeout, so it is the same.
            session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=int(worker.heartbeat_interval_seconds * 1000),
            fetch_max_wait_ms=100,
            # Input partition p and re-keyed partition p feed one processor: the
            # range assignor gives partition p of every topic (same count, same
            # subscribers) to one member, as Kafka Streams' co-partitioning does.
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        self._positions = KafkaPositions(self._consumer, input_topic=config.input_topic)
        stream_loop = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await stream_loop.on_revoked(*stream_loop.split(revoked))

            async def on_partitions_assigned(self, assigned: Any) -> None:
                try:
                    await stream_loop.on_assigned(*stream_loop.split(assigned))
                except Exception as exc:
                    # aiokafka logs a listener's exception and goes on; the
                    # partitions would then stay assigned but never loaded, and
                    # the worker would consume nothing with /healthz 200.
                    stream_loop.fail(exc)

        await self._consumer.start()
        topics = [config.input_topic]
        if config.identity_topic is not None and config.rekeyed_topic is not None:
            topics += [config.rekeyed_topic, config.identity_topic]
        self._consumer.subscribe(topics, listener=Listener())

    def split(self, tps: Iterable[Any]) -> tuple[list[int], list[int]]:
        """Assigned or revoked topic partitions as (customer partitions: input or
        re-keyed, identity partitions)."""
        customers = sorted({tp.partition for tp in tps if tp.topic != self.config.identity_topic})
        identity = sorted({tp.partition for tp in tps if tp.topic == self.config.identity_topic})
        return customers, identity

    async def run(self) -> None:
        """Consume until :meth:`stop`; an error in a commit ends the loop with it."""
        consumer = self._consumer
        timeout_ms = int(self.config.poll_timeout_s * 1000)
        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=self.config.max_batch)
            if self._failure is not None:
                raise self._failure
            if batch:
                await self.process(await self._filled(batch))

    async def _filled(
        self, batch: dict[Any, list[ConsumedRecord]]
    ) -> Mapping[Any, Sequence[ConsumedRecord]]:
        """``batch`` topped up with what the consumer already holds, up to ``max_batch``.

        One ``getmany`` returns what one fetch brought (~1,000 simulator events
        on six partitions). A commit writes every customer the batch changed,
        so when a backlog is read, fewer and larger batches write fewer states:
        at 1,000 events a batch ~0.7 state writes per event, at 5,000 ~0.3.
        Topping up takes only records already fetched, and never longer than
        ``fill_s``, so a quiet stream is not held back.
        """
        max_batch = self.config.max_batch
        count = sum(len(records) for records in batch.values())
        deadline = time.monotonic() + self.config.fill_s
        while count < max_batch and time.monotonic() < deadline:
            more = await self._consumer.getmany(timeout_ms=0, max_records=max_batch - count)
            if not more:
                break
            for tp, records in more.items():
                batch[tp] = [*batch[tp], *records] if tp in batch else records
                count += len(records)
        return batch

    def fail(self, exc: BaseException) -> None:
        """End :meth:`run` with ``exc`` (a partition could not be restored)."""
        log.critical("a partition could not be restored: %r", exc, exc_info=exc)
        self._failure = exc

    def stop(self) -> None:
        """Let :meth:`run` return after the batch in hand is committed."""
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
            records = raw_records(self._applicable(batch))
            handle = self.handler.handle
            identity_topic = self.config.identity_topic
            handle_identity = self.identity.handle
            for start in range(0, len(records), HANDLE_CHUNK):
                if start:
                    # Let the consumer's heartbeat and the fetcher run between
                    # chunks: a 5,000-record batch holds the loop for ~0.5 s.
                    await asyncio.sleep(0)
                for record in records[start : start + HANDLE_CHUNK]:
                    if record.topic == identity_topic:
                        handle_identity(record)
                    else:
                        handle(record)
            await self._commit(self._checkpoint(next_offsets_by_topic(records)))
            if not self._first_batch_logged:
                self._first_batch_logged = True
                log.info("rebalance: first batch after it, %s events", len(records))
        if self._on_batch is not None:
            self._on_batch(len(records))
        return len(records)

    def _applicable(
        self, batch: Mapping[Any, Sequence[ConsumedRecord]]
    ) -> dict[Any, Sequence[ConsumedRecord]]:
        """The part of a ``getmany`` result this worker may apply now.

        A batch can be fetched before a rebalance and applied after it (it waits
        for the lock while the partitions are restored). Records of a partition
        this worker no longer owns are left to its new owner. Records that start
        past the state's position were fetched from an older position (the
        group's committed offset, before :meth:`on_assigned` moved it): the
        partition is moved back to the state's position and read again, so no
        record in between is skipped.
        """
        applicable: dict[Any, Sequence[ConsumedRecord]] = {}
        identity_topic = self.config.identity_topic
        transactional = self.config.guarantee == EXACTLY_ONCE
        for tp, consumed in batch.items():
            if not consumed:
                continue
            if tp.topic == identity_topic:
                if tp.partition not in self.identity.loaded:
                    continue
                hole = self.identity.missing_before(tp.partition, consumed[0].offset)
            elif tp.partition not in self.loaded:
                continue
            else:
                hole = self.handler.missing_before(tp.partition, consumed[0].offset, tp.topic)
            if hole is not None and transactional and tp.topic != self.config.input_topic:
                # The worker writes these topics in transactions: each commit
                # marker takes an offset no record has, so offsets run with gaps.
                # Exactly once the group's offsets and the state are one
                # transaction's and agree: nothing was fetched from elsewhere.
                hole = None
            if hole is not None:
                log.info(
                    "partition %s: a batch starting at %s was fetched before the move to "
                    "the state's position %s; reading from there",
                    tp.partition,
                    consumed[0].offset,
                    hole[0],
                )
                self._consumer.seek(tp, hole[0])
                continue
            applicable[tp] = consumed
        return applicable

    async def tick(self) -> dict[int, PartitionGauge]:
        """Advance the loaded partitions' clocks to wall time (live mode) and commit.

        Also writes what the handler holds back between batches (throttled
        open-session updates). Returns the loaded partitions' gauges.
        """
        async with self._lock:
            partitions = sorted(self.loaded)
            self.handler.tick(partitions)
            self.identity.tick(sorted(self.identity.loaded))
            await self._commit(self._checkpoint({}))
            return self.handler.gauges(partitions)

    def _checkpoint(self, offsets: dict[str, dict[int, int]]) -> Checkpoint:
        """What the handlers produced since the last commit, and the offsets after it."""
        drained = self.handler.drain()
        identity = self.identity.drain() if self.config.identity_topic is not None else None
        input_offsets = offsets.pop(self.config.input_topic, {})
        if identity is None:
            return Checkpoint(drained.outgoing, drained.state, input_offsets)
        return Checkpoint(
            [*drained.outgoing, *identity.outgoing],
            drained.state,
            input_offsets,
            identity_state=identity.state,
            other_offsets=offsets,
        )

    async def _commit(self, checkpoint: Checkpoint) -> None:
        assert self._outputs is not None and self._positions is not None, "start() first"
        await commit(
            checkpoint,
            outputs=self._outputs,
            positions=self._positions,
            changelog_topic=self.config.changelog_topic,
            guarantee=self.config.guarantee,
            dead_letter_topic=self._dead_letter_topic,
            identity_changelog_topic=self.config.identity_changelog_topic,
        )

    # -- partition lifecycle ----------------------------------------------------

    async def on_assigned(
        self, partitions: Iterable[int], identity_partitions: Iterable[int] = ()
    ) -> None:
        """Restore newly assigned partitions and resume each from its state's position.

        ``partitions``: customer partitions (input partition p and re-keyed
        partition p, one state); ``identity_partitions``: identity partitions.
        """
        assert self._changelog is not None, "start() first"
        from aiokafka import TopicPartition

        started = time.monotonic()
        async with self._lock:
            new = sorted(set(partitions) - self.loaded)
            restored = await self._changelog.read(new)
            handler = self.handler
            for partition in new:
                customers = handler.load_partition(partition, restored[partition].items())
                self.loaded.add(partition)
                if not await self._position_matches_the_log(partition):
                    log.error(
                        "partition %s: the record at the state's position (offset %s) is not "
                        "in %s any more: the input topic was recreated or truncated; its "
                        "records are processed as new",
                        partition,
                        handler.applied_offsets.get(partition),
                        self.config.input_topic,
                    )
                    handler.forget_position(partition)
                applied = handler.applied_offsets.get(partition)
                if applied is not None:
                    self._consumer.seek(
                        TopicPartition(self.config.input_topic, partition), applied + 1
                    )
                rekeyed = handler.applied_rekeyed.get(partition)
                if rekeyed is not None and self.config.rekeyed_topic is not None:
                    self._consumer.seek(
                        TopicPartition(self.config.rekeyed_topic, partition), rekeyed + 1
                    )
                log.info(
                    "partition %s: restored %s customers, resuming at offset %s",
                    partition,
                    customers,
                    "committed" if applied is None else applied + 1,
                )
            await self._assign_identity(identity_partitions)
            self._first_batch_logged = False
        log.info(
            "rebalance: partitions assigned %s; restored in %.2fs",
            new,
            time.monotonic() - started,
        )

    async def _assign_identity(self, partitions: Iterable[int]) -> None:
        """Restore identity partitions from the identity changelog; resume each from
        its stored position (called under the lock)."""
        new = sorted(set(partitions) - self.identity.loaded)
        if not new or self._identity_changelog is None:
            return
        from aiokafka import TopicPartition

        restored = await self._identity_changelog.read(new)
        for partition in new:
            identifiers = self.identity.load_partition(partition, restored[partition].items())
            applied = self.identity.applied_offsets.get(partition)
            if applied is not None and self.config.identity_topic is not None:
                self._consumer.seek(
                    TopicPartition(self.config.identity_topic, partition), applied + 1
                )
            log.info(
                "identity partition %s: restored %s identifiers, resuming at offset %s",
                partition,
                identifiers,
                "committed" if applied is None else applied + 1,
            )

    async def on_revoked(
        self, partitions: Iterable[int], identity_partitions: Iterable[int] = ()
    ) -> None:
        """Forget revoked partitions; every batch taken is already committed."""
        started = time.monotonic()
        async with self._lock:
            revoked = sorted(partitions)
            for partition in revoked:
                self.handler.drop_partition(partition)
                self.loaded.discard(partition)
            for partition in identity_partitions:
                self.identity.drop_partition(partition)
        # One line per rebalance step at info level: a takeover's time can be
        # read off the log (docs/ops.md, "Failover").
        log.info(
            "rebalance: partitions revoked %s; handled in %.2fs",
            revoked,
            time.monotonic() - started,
        )

    async def _position_matches_the_log(self, partition: int) -> bool:
        """Is the record the state was last applied to still at that offset?

        A deleted and recreated input topic starts its offsets again from 0; a
        stored position would then skip its first records as redeliveries.
        """
        from aiokafka import TopicPartition

        applied = self.handler.applied_offsets.get(partition)
        crc = self.handler.applied_crcs.get(partition)
        if applied is None or crc is None:
            return True  # nothing stored, or stored by a version without the checksum
        tp = TopicPartition(self.config.input_topic, partition)
        restorer = self._restorer
        restorer.assign([tp])
        if (await restorer.end_offsets([tp]))[tp] <= applied:
            return False
        restorer.seek(tp, applied)
        batch = await restorer.getmany(tp, timeout_ms=5000, max_records=1)
        found = batch.get(tp, [])
        # Read committed, an offset can hold a transaction marker instead of a
        # record: the first record found is then past it, and not ours.
        return (
            bool(found)
            and found[0].offset == applied
            and (record_crc(found[0].key, found[0].value) == crc)
        )

    # -- what the worker's pages read -------------------------------------------

    def progress(self) -> tuple[dict[Hashable, int | None], dict[Hashable, int | None]]:
        """Positions and log ends of the input partitions held, for ``/healthz``.

        A position is the offset after the last record applied (``None``: none
        yet); an end is unknown (``None``) until the partition was fetched once.
        """
        positions: dict[Hashable, int | None] = {}
        ends: dict[Hashable, int | None] = {}
        for partition in sorted(self.loaded):
            applied = self.handler.applied_offsets.get(partition)
            positions[partition] = applied + 1 if applied is not None else None
            ends[partition] = self.log_end(partition)
        return positions, ends

    def log_end(self, partition: int, topic: str | None = None) -> int | None:
        """The end of partition ``partition`` of ``topic`` (default: the input) as last
        fetched (aiokafka's ``highwater``); None if unknown."""
        if self._consumer is None:
            return None
        from aiokafka import TopicPartition

        try:
            end = self._consumer.highwater(
                TopicPartition(topic or self.config.input_topic, partition)
            )
        except Exception:  # not assigned any more: unknown
            return None
        return int(end) if end is not None else None

    def side_positions(self) -> list[tuple[str, int, int | None, int | None]]:
        """``(topic, partition, last applied offset, log end)`` of the re-keyed and
        identity partitions held (issue 16), for the lag gauge; empty without identity."""
        rekeyed, identity = self.config.rekeyed_topic, self.config.identity_topic
        if rekeyed is None or identity is None:
            return []
        positions: list[tuple[str, int, int | None, int | None]] = []
        for partition in sorted(self.loaded):
            applied = self.handler.applied_rekeyed.get(partition)
            positions.append((rekeyed, partition, applied, self.log_end(partition, rekeyed)))
        for partition in sorted(self.identity.loaded):
            applied = self.identity.applied_offsets.get(partition)
            positions.append((identity, partition, applied, self.log_end(partition, identity)))
        return positions
