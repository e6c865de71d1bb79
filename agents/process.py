"""The stream-core agent: input topic -> StreamHandler -> output topics + state changelog.

Thin by design: every rule lives in ``pipeline.streaming`` and ``pipeline.core``.
This module loops over batches and hands them to the stream core, which runs in
a child process by default (``agents/core_client.py``, ``agents/core_child.py``)
and there also sends the batch's outputs and state to Kafka.

Two tasks share the work. The agent hands batch N to the core and goes back to
Faust for batch N+1 without waiting; the flusher (:meth:`ProcessRole._flush_in_order`)
takes the results in the order the batches were handed over and, for each,
makes sure the outputs were sent and acknowledged before the state was written
(``pipeline/streaming.py``: outputs before state, position last), and updates
the metrics and the gauges. At most :data:`BATCHES_AHEAD`
results wait to be flushed. A revocation and shutdown first wait until every
result handed over is flushed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

import faust
from faust.types import TP

from agents.batch_send import BatchSender, send_result
from agents.core_client import CoreClient, CoreProcessFailed, record_fields
from agents.refetch import MissedRecordFetcher
from agents.state_store import latest_values, state_changelog_topic
from pipeline.core_process import BatchResult, replay_metrics
from pipeline.metrics import Metrics
from pipeline.settings import Settings
from pipeline.streaming import PartitionGauge, items_of_partition, record_crc
from pipeline.topics import INTERACTIONS

log = logging.getLogger(__name__)

#: A partition whose last applied offset has not moved for this long while its
#: log goes on is read from the broker (see ``_fill_stalled_partitions``).
STALL_SECONDS = 3.0
#: Batches handed to the stream core whose results are not flushed yet, at most.
#: Two: one being flushed, one being worked on while Faust delivers the next.
BATCHES_AHEAD = 2


class ProcessRole:
    """Registers the process agent, its flusher and its timer on a Faust app."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        metrics: Metrics,
        *,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self._on_batch = on_batch
        self.settings = settings
        self.metrics = metrics
        self.core = CoreClient(settings, separate_process=settings.worker.core_process)
        self.input_topic_name = settings.kafka.topic(INTERACTIONS)
        self.refetcher = MissedRecordFetcher(settings.kafka)
        # Stalled-partition check: partition -> (applied offset, monotonic time
        # it was first seen behind the log end at that offset), and the end of
        # the stretch it last read.
        self._stalled_since: dict[int, tuple[int, float]] = {}
        self._read_to: dict[int, int] = {}
        # Handing records to the core, loading and dropping partitions are done
        # under this lock, by the agent or the timer, one at a time; flushing
        # results is not (the flusher never takes it).
        self.lock = asyncio.Lock()
        # Results handed over, in order, with the number of input events of each.
        self._unflushed: asyncio.Queue[tuple[asyncio.Future[BatchResult], int]] = asyncio.Queue()
        self._batch_slots = asyncio.Semaphore(BATCHES_AHEAD)
        self._failure: BaseException | None = None
        self._core_starting: asyncio.Future[None] | None = None
        #: Set when the worker stops: the core is closed, nothing more goes to it.
        self._stopping = False
        self.input_topic = app.topic(
            self.input_topic_name, key_serializer="raw", value_serializer="raw"
        )
        # No Faust table: the stream core writes each customer's state to the
        # changelog itself and a partition's state is read from the broker when
        # the partition is loaded (agents/state_store.py says why).
        self.state_topic = state_changelog_topic(settings.kafka)
        # The oldest unanswered item is compared with the channel's tightest target.
        self._tightest_target: dict[str, float] = {}
        for policy in settings.policies:
            current = self._tightest_target.get(policy.channel)
            if current is None or policy.target_seconds < current:
                self._tightest_target[policy.channel] = policy.target_seconds
        app.agent(self.input_topic, name="process")(self._process)
        app.timer(settings.worker.tick_seconds)(self._tick)
        app.task(self._flush_in_order)
        # mode's Signal stubs do not admit async receivers, which it does support.
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self._on_rebalance_complete)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]
        # Between a revocation and Faust's on_rebalance_complete neither the
        # agent (which may still hold a batch taken before the rebalance) nor
        # the timer hands records to the core: the assignment is not settled.
        self._ready = asyncio.Event()
        #: The first batch after each assignment is logged (the takeover's last step).
        self._first_batch_logged = False

    # -- agent ---------------------------------------------------------------

    async def _process(self, stream: faust.StreamT) -> None:
        worker = self.settings.worker
        # take_events is faust-streaming's batching API; StreamT's stub lacks it.
        batches = stream.take_events(worker.batch_size, within=worker.batch_seconds)  # type: ignore[attr-defined]
        async for events in batches:
            await self._ready.wait()
            if not self._first_batch_logged:
                self._first_batch_logged = True
                log.info("rebalance: first batch after it, %s events", len(events))
            async with self.lock:
                if self._stopping:
                    # The core is closed: these records go to the next owner.
                    # Returning, not raising: under the crashing supervisor an
                    # error here would turn a clean stop into a crash.
                    return
                owned = self._owned_partitions()
                core = self.core
                for event in events:
                    message = event.message
                    partition = message.partition
                    if partition not in owned:
                        # Taken before a rebalance moved the partition away: its
                        # new owner reprocesses it; writing its state here would
                        # land in the owner's changelog partition.
                        continue
                    if not core.has_partition(partition):
                        await self._load(partition)
                    hole = core.missing_before(partition, message.offset)
                    if hole is not None:
                        await self._fill(message.topic, partition, *hole)
                    headers = message.headers
                    core.handle(
                        (
                            partition,
                            message.offset,
                            message.key,
                            message.value,
                            int(message.timestamp * 1000) if message.timestamp else None,
                            _headers(headers) if headers else (),
                        )
                    )
                await self._hand_over(core.drain(), len(events))

    async def _hand_over(self, result: asyncio.Future[BatchResult], events: int) -> None:
        """Queue a batch's result for the flusher; waits while BATCHES_AHEAD are queued."""
        await self._batch_slots.acquire()
        self._unflushed.put_nowait((result, events))

    async def _flush_in_order(self) -> None:
        """The flusher: flush each batch's result, in the order the batches were handed over."""
        while True:
            result, events = await self._unflushed.get()
            try:
                if self._failure is None:
                    await self._flush(await result)
                    if self._on_batch is not None and events:
                        self._on_batch(events)
            except Exception as exc:
                # Outputs or state could not be written, or the core failed: stop
                # the worker. A restart resumes from the last state written.
                self._failure = exc
                log.critical("the stream core's results could not be written; stopping: %s", exc)
                await self.app.crash(exc)
            finally:
                self._batch_slots.release()
                self._unflushed.task_done()

    async def _settle(self) -> None:
        """Wait until every result handed over is flushed: state and offsets agree."""
        await self._unflushed.join()
        if self._failure is not None:
            raise CoreProcessFailed("the worker is stopping after a failure") from self._failure

    async def _tick(self) -> None:
        """Every ``worker.tick_seconds``: wall-clock timers (live mode), gauges, lag."""
        if not self.core.started or self._stopping:
            return  # before the first assignment or while stopping: nothing to do
        partitions = self._active_partitions() if self._ready.is_set() else []
        async with self.lock:
            if self._stopping:
                return
            for partition in partitions:
                if not self.core.has_partition(partition):
                    await self._load(partition)
            await self._fill_stalled_partitions(partitions)
            # Queued behind the batches handed over before it: what the tick makes
            # due is sent with its result, and the flusher sets the gauges from it.
            await self._hand_over(self.core.drain(tick_partitions=partitions), 0)
            await self._unblock_stuck_commits(partitions)

    async def _unblock_stuck_commits(self, partitions: list[int]) -> None:
        """Let Faust commit past offsets it never delivered but this worker applied.

        Faust commits a partition as the run of acknowledged offsets that starts
        right after its committed offset, and commits nothing while the lowest
        acknowledged offset is further ahead. After a restart its fetcher can
        skip records (see ``agents/refetch.py``); when the first record it then
        delivers is not the one after the committed offset, that partition's
        commit stops for good, although this worker applied every record (from
        its position, or read from the broker): the group's lag then grows
        without end and a restart re-reads ever more. Booking exactly that hole
        as a gap, Faust's own mechanism for offsets that need no processing, lets
        the commit move on. Only a hole the position covers is booked, and never
        an offset Faust already counts, which would break its run. Where Faust
        holds no acknowledged offset at all for a partition yet is behind the
        state, it is not delivering that partition any more (the stalled-partition
        check read the records): the state's position is committed. Uses private
        members of faust-streaming's consumer (pinned to 0.15.3; the restart
        tests in tests/integration cover it).

        The position used is that of the records handed to the core, which can
        be a batch or two ahead of the state written. Faust itself acknowledges
        records once they are handed over, so its commits can be that far ahead
        too; a restart then finds the state behind the committed offset and
        reads the difference from the broker (``_fill``), exactly.
        """
        consumer = self.app.consumer
        topic = self.input_topic_name
        idle: dict[TP, int] = {}
        for partition in partitions:
            applied = self.core.applied_offsets.get(partition)
            tp = TP(topic, partition)
            acked = consumer._acked.get(tp)  # type: ignore[attr-defined]
            committed = consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
            if applied is None:
                continue
            if not acked:
                # Faust holds nothing to commit here. If it is behind the state
                # anyway, it stopped delivering this partition (the records came
                # from the stalled-partition check): commit what the state holds.
                if committed is None or committed <= applied:
                    idle[tp] = applied + 1
                continue
            if committed is None:
                continue
            first_acked = min(acked)
            if first_acked - committed > 1 and applied >= first_acked - 1:
                log.warning(
                    "partition %s: Faust's commit was stuck at %s (next acknowledged offset "
                    "%s); booked the offsets in between, which the state holds",
                    partition,
                    committed,
                    first_acked,
                )
                await consumer._add_gap(tp, committed, first_acked - 1)  # type: ignore[attr-defined]
        if idle:
            # Faust's own commit path, so its committed offsets stay in step; it
            # never commits lower afterwards (it only commits offsets above them).
            await consumer._commit_offsets(idle)  # type: ignore[attr-defined]

    async def _fill_stalled_partitions(self, partitions: list[int]) -> None:
        """Apply records the consumer skipped at the end of a partition.

        A skipped record in the middle shows as a hole when the next one arrives;
        a skipped *last* record has no next one. When a partition's log goes on
        past the last applied offset and that offset has not moved for
        ``STALL_SECONDS``, the rest is read from the broker (records Faust still
        delivers later are then skipped by offset).

        The log ends are asked of the broker, not taken from Faust's consumer:
        Faust's highwater only moves with its own fetch responses, and its
        fetcher sometimes stops fetching for about a minute after a takeover
        (the failover test saw both the takeover and the end-of-input wait 60 s,
        one run in a few; like faust-streaming#175 and #640, consumers that
        stop). With a stale highwater this check could not see the stall it
        exists for.
        """
        if not partitions:
            return
        now = time.monotonic()
        topic = self.input_topic_name
        try:
            log_ends = await self.refetcher.end_offsets(topic, partitions)
        except Exception as exc:  # the broker is unreachable: the next tick asks again
            log.debug("stalled-partition check skipped: %s", exc)
            return
        for partition in partitions:
            applied = self.core.applied_offsets.get(partition)
            if applied is None:
                continue
            highwater = log_ends.get(partition)
            # Read each stretch once: a log that ends in transaction markers has
            # nothing to apply, however often it is asked.
            start = max(applied + 1, self._read_to.get(partition, 0))
            if highwater is None or highwater <= start:
                self._stalled_since.pop(partition, None)
                continue
            stalled = self._stalled_since.get(partition)
            if stalled is None or stalled[0] != applied:
                self._stalled_since[partition] = (applied, now)
            elif now - stalled[1] >= STALL_SECONDS:
                await self._fill(topic, partition, start, highwater)
                self._read_to[partition] = highwater
                self._stalled_since.pop(partition, None)

    # -- helpers -------------------------------------------------------------

    async def _fill(self, topic: str, partition: int, start: int, end: int) -> None:
        """Hand over the records at offsets ``start..end-1``, read from the broker.

        Faust did not deliver them: its commit ran ahead of the state before a
        crash, or its fetcher skipped them (``agents/refetch.py``).
        """
        missed = await self.refetcher.fetch(topic, partition, start, end)
        if missed:
            log.warning(
                "partition %s: offsets %s..%s after the state's position were not "
                "delivered; applied %s records read from the broker",
                partition,
                start,
                end - 1,
                len(missed),
            )
            self.metrics.refetched(len(missed))
        for record in missed:
            self.core.handle(record_fields(record))

    def progress(self) -> tuple[dict[Hashable, int | None], dict[Hashable, int | None]]:
        """Positions and log ends of the input partitions held, for ``/healthz``.

        A position is the offset after the last record handed to the core
        (``None``: none yet); an end is unknown (``None``) until Faust fetched
        the partition once.
        """
        consumer = self.app.consumer
        positions: dict[Hashable, int | None] = {}
        ends: dict[Hashable, int | None] = {}
        for partition in self._owned_partitions():
            applied = self.core.applied_offsets.get(partition)
            positions[partition] = applied + 1 if applied is not None else None
            try:
                ends[partition] = consumer.highwater(TP(self.input_topic_name, partition))
            except Exception:  # unknown until the first fetch response
                ends[partition] = None
        return positions, ends

    def _active_partitions(self) -> list[int]:
        if self.app.rebalancing:
            return []
        return sorted(self._owned_partitions())

    def _owned_partitions(self) -> set[int]:
        """Input partitions actively assigned to this worker right now."""
        return {
            tp.partition
            for tp in self.app.consumer.assignment()
            if tp.topic == self.input_topic_name
        }

    async def _load(self, partition: int) -> None:
        """Build a partition's processor from its state changelog partition, read to its end.

        Everything this worker wrote there before is acknowledged (a revocation
        flushes first), and a previous owner either flushed in its revocation
        or is dead, so the end read here is the state's last word.
        """
        await self._start_core()
        stored = latest_values(await self.refetcher.read_partition(self.state_topic, partition))
        items = list(
            items_of_partition(partition, stored.items(), self.settings.kafka.input_partitions)
        )
        restored = await self.core.load(partition, items)
        self._stalled_since.pop(partition, None)
        self._read_to.pop(partition, None)
        log.info("partition %s: restored %s customers from its state", partition, restored)
        if not await self._position_matches_the_log(partition):
            # Skipping "redelivered" records by offset would drop the new log's
            # records; event-id deduplication still guards against repeats.
            log.error(
                "partition %s: the record at the state's position (offset %s) is not in "
                "%s any more: the input topic was recreated or truncated; its records are "
                "processed as new",
                partition,
                self.core.applied_offsets.get(partition),
                self.input_topic_name,
            )
            await self.core.forget_position(partition)

    async def _position_matches_the_log(self, partition: int) -> bool:
        """Is the record the state was last applied to still at that offset?

        A deleted and recreated input topic starts its offsets again from 0; a
        stored position would then skip its first records as redeliveries.
        """
        applied = self.core.applied_offsets.get(partition)
        crc = self.core.applied_crcs.get(partition)
        if applied is None or crc is None:
            return True  # nothing stored, or stored by a version without the checksum
        topic = self.input_topic_name
        if await self.refetcher.end_offset(topic, partition) <= applied:
            return False
        found = await self.refetcher.fetch(topic, partition, applied, applied + 1)
        return bool(found) and record_crc(found[0].key, found[0].value) == crc

    async def _on_revoked(self, sender: Any, revoked: set[TP], **_: Any) -> None:
        self._ready.clear()
        started = time.monotonic()
        # Under the lock, after the batches handed over are flushed with the
        # processors they started with; the next batch reloads them from the
        # state changelog.
        async with self.lock:
            await self._settle()
            for tp in revoked:
                if tp.topic == self.input_topic_name and self.core.has_partition(tp.partition):
                    await self.core.drop(tp.partition)
        # One line per rebalance step at info level: a takeover's time can be
        # read off the log (docs/ops.md, "Failover").
        log.info(
            "rebalance: partitions revoked %s; handled in %.2fs",
            self._input_partitions(revoked),
            time.monotonic() - started,
        )

    async def _on_assigned(self, sender: Any, assigned: set[TP], **_: Any) -> None:
        self._ready.clear()
        self._first_batch_logged = False
        log.info(
            "rebalance: partitions assigned %s",
            self._input_partitions(assigned),
        )
        if self._core_starting is None:
            # Started in the background, once: Faust awaits its rebalance
            # handlers inside its recovery sequence, and a second's delay there
            # (spawning the child) left the consumer delivering nothing after a
            # restart. The first load waits for the start.
            self._core_starting = asyncio.ensure_future(self._start_core())

    async def _on_shutdown(self, sender: Any, **_: Any) -> None:
        try:
            # What was handed over is written before the worker stops (a batch
            # not written is processed again after the restart, exactly).
            await asyncio.wait_for(self._unflushed.join(), timeout=10)
        except TimeoutError:
            log.warning("stopping with stream-core results not yet written")
        # Under the lock, so the agent or the timer is not half-way through
        # handing records to a core that is closing; they see _stopping after.
        try:
            await asyncio.wait_for(self.lock.acquire(), timeout=10)
        except TimeoutError:
            log.warning("stopping while records are being handed to the stream core")
        else:
            self._stopping = True
            self.lock.release()
        self._stopping = True
        await self.core.close()
        await self.refetcher.close()

    async def _on_rebalance_complete(self, sender: Any, **_: Any) -> None:
        log.info("rebalance: complete, processing resumes")
        self._ready.set()

    def _input_partitions(self, tps: set[TP]) -> list[int]:
        return sorted(tp.partition for tp in tps if tp.topic == self.input_topic_name)

    async def _flush(self, result: BatchResult) -> None:
        """Write a batch's result: outputs, their acks, then state (position last).

        A child process has sent the records already (``agents/core_child.py``);
        otherwise they go to Faust's aiokafka producer as record batches
        (``agents/batch_send.py``): the topic-level ``send`` wraps every record
        in promise objects and callbacks, which cost more than the stream core
        itself in the pipeline benchmark.
        """
        if not result.sent:
            # The aiokafka driver's producer; ProducerT does not declare the accessor.
            sender = BatchSender(self.app.producer._ensure_producer())  # type: ignore[attr-defined]
            await send_result(sender, result, self.state_topic)
        replay_metrics(result, self.metrics)
        if result.gauges is not None:
            self._update_gauges(result.gauges)

    async def _start_core(self) -> None:
        """Start the stream core (once), its producer configured like Faust's.

        Connection and security are not in ``producer_config``: the child adds
        ``aiokafka_options`` of the settings itself (an SSL context cannot be pickled).
        """
        conf = self.app.conf
        producer_config = {
            "client_id": f"{conf.id}-core",
            "acks": "all" if conf.producer_acks == -1 else conf.producer_acks,
            "linger_ms": conf.producer_linger_ms,
            "max_batch_size": conf.producer_max_batch_size,
            "max_request_size": conf.producer_max_request_size,
            "compression_type": conf.producer_compression_type,
            "request_timeout_ms": int(conf.producer_request_timeout * 1000),
        }
        await self.core.start(producer_config, self.state_topic)

    def _update_gauges(self, gauges: dict[int, PartitionGauge]) -> None:
        self.metrics.set_open_sessions(sum(g.open_sessions for g in gauges.values()))
        # Ages are measured on each partition's clock (event time), so a replay
        # or a time-lapse simulation shows the same ages as live traffic.
        oldest_age: dict[str, float] = {}
        waiting: dict[str, int] = {}
        for gauge in gauges.values():
            for channel, count in gauge.waiting_contacts.items():
                waiting[channel] = waiting.get(channel, 0) + count
            if gauge.clock_ms is None:
                continue
            for channel, started in gauge.oldest_open_sla_clock.items():
                age = max(0.0, (gauge.clock_ms - started) / 1000)
                oldest_age[channel] = max(age, oldest_age.get(channel, 0.0))
        for channel in self.settings.channels.keys:
            age = oldest_age.get(channel, 0.0)
            target = self._tightest_target.get(channel)
            ratio = age / target if target else 0.0
            self.metrics.set_oldest_unanswered(channel, age, ratio)
            self.metrics.set_waiting_contacts(channel, waiting.get(channel, 0))
        consumer = self.app.consumer
        for partition, gauge in gauges.items():
            tp = TP(self.input_topic_name, partition)
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # lag is best-effort telemetry; never break the timer
                continue
            last = self.core.applied_offsets.get(partition)
            if highwater is not None:
                lag = highwater - (last + 1 if last is not None else 0)
                self.metrics.set_lag(self.input_topic_name, partition, max(0, lag))
            if gauge.clock_ms is not None:
                self.metrics.set_stream_time(partition, gauge.clock_ms / 1000)


def _headers(headers: Any) -> list[tuple[str, bytes]]:
    items = headers.items() if isinstance(headers, dict) else headers
    return [
        (name, value if isinstance(value, bytes) else bytes(value or b"")) for name, value in items
    ]
