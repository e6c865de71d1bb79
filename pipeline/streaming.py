"""The streaming step between Kafka records and the stream core, without Kafka.

The Faust agent (``agents/process.py``) stays thin: it hands every consumed
record to :class:`StreamHandler` and sends what the handler returns. Keeping
this glue free of faust lets unit tests drive it with plain records and keeps
the rules in one place:

* a record that fails anywhere, decoding, validating, applying or encoding,
  becomes a dead letter with the stage and the error, and the worker carries on:
  no single record may stop it (issue 12). Every record the handler returns
  stays within ``limits.max_record_bytes``;
* records keyed by something other than the customer id are re-published keyed
  by ``customer_id`` so one customer's events meet on one partition;
* an end-of-input control record closes everything on its partition (replays,
  backfills and deterministic tests) when ``worker.control_records`` is on;
  otherwise it is a dead letter (stage ``control``);
* everything else goes to the partition's :class:`PartitionProcessor`.

Ordering promise (what makes restarts exact): :meth:`drain` returns the output
records *and* the dirty per-customer state of the same batch. The agent must
send the outputs and wait until Kafka acknowledged them **before** it writes the
state to the changelog, and it writes the partition's position last: its clock
and the offset of the last input record whose effects the state holds (the
table's encoding is :mod:`pipeline.stream_state`). After a
crash, either the state was not written (the records are processed again from
the old state and produce the same outputs again, which sinks upsert), or it
was, and the redelivered records at or below the stored offset are skipped by
offset. Skipping by offset rather than relying on event-id deduplication keeps
a restart exact also for customers whose state was evicted in between, and for
records that never reach a customer (dead letters, re-keyed records, control
records).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pipeline.contract.codec import EventCodec, RecordCodec
from pipeline.contract.event import needs_identity, record_key
from pipeline.contract.validate import validate
from pipeline.core.identity_stage import CustomerEvent
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import (
    ContactSummary,
    JourneySignal,
    LateEvent,
    NeedRecord,
    OutputRecord,
    SessionRecord,
    SlaEvent,
)
from pipeline.dlq import build_unsent_dead_letter, record_size
from pipeline.errors import ContractError, ControlRecordRefused, RecordTooLargeError
from pipeline.identity_wire import IdentityEnd, decode_rekeyed
from pipeline.record_caps import cap_late_event
from pipeline.settings import Settings

# Re-exported: the control record's names, where they always were.
from pipeline.stream_records import CONTROL_HEADER as CONTROL_HEADER
from pipeline.stream_records import END_OF_INPUT as END_OF_INPUT
from pipeline.stream_records import (
    Drained,
    IdentityMetricsSink,
    MetricsSink,
    NoIdentityMetrics,
    NoMetrics,
    Outgoing,
    PartitionGauge,
    RawRecord,
    dead_letter_of,
    input_end_of,
    is_end_of_input,
    partition_gauge,
)
from pipeline.stream_state import (
    CLOCK_KEY_PREFIX,
    Position,
    clock_key,
    decode_position,
    decode_table_state,
    encode_position,
    encode_table_state,
    is_redelivery,
    items_of_partition,
    offsets_missing_before,
    record_crc,
)
from pipeline.topics import (
    CONTACTS,
    DLQ,
    IDENTITY,
    INTERACTIONS,
    JOURNEY_SIGNALS,
    LATE_EVENTS,
    NEEDS,
    REKEYED,
    SESSIONS,
    SLA_EVENTS,
)

log = logging.getLogger(__name__)


OUTPUT_TOPIC_SUFFIX: Mapping[type[OutputRecord], str] = {
    SessionRecord: SESSIONS,
    ContactSummary: CONTACTS,
    SlaEvent: SLA_EVENTS,
    JourneySignal: JOURNEY_SIGNALS,
    LateEvent: LATE_EVENTS,
    NeedRecord: NEEDS,
}


class StreamHandler:
    """Turns consumed input records into output records and state changes."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: MetricsSink | None = None,
        wall_clock_ms: Callable[[], int] | None = None,
        identity: bool = False,
        identity_metrics: IdentityMetricsSink | None = None,
    ) -> None:
        """``identity``: the worker's wiring of issue 16 (the loop always sets it):
        identity events go to the ``identity`` topic, ``interactions-rekeyed``
        records are applied, and a partition's end of input waits for every
        identity partition's. Off, the handler is the customers' path alone and
        refuses identity events as a contract without them (unit tests of it)."""
        self.settings = settings
        self.identity = identity
        self.identity_metrics: IdentityMetricsSink = identity_metrics or NoIdentityMetrics()
        self.metrics: MetricsSink = metrics or NoMetrics()
        self._wall_ms = wall_clock_ms or (lambda: int(time.time() * 1000))
        self._event_codec = EventCodec()
        self._record_codecs = {cls: RecordCodec(cls.OUTPUT_NAME) for cls in OUTPUT_TOPIC_SUFFIX}
        kafka = settings.kafka
        self.input_topic = kafka.topic(INTERACTIONS)
        self.identity_topic = kafka.topic(IDENTITY)
        self.rekeyed_topic = kafka.topic(REKEYED) if identity else None
        #: partition -> offset of the last re-keyed record whose effects are in the state.
        self.applied_rekeyed: dict[int, int] = {}
        #: The end of input's wait (Position): partition -> the input end its own
        #: marker carried; partition -> the identity partitions whose end arrived.
        self._input_ended: dict[int, int | None] = {}
        self._identity_ended: dict[int, set[int]] = {}
        self._reattributions: dict[int, int] = {}
        self.dlq_topic = kafka.topic(DLQ)
        self._output_topics = {cls: kafka.topic(s) for cls, s in OUTPUT_TOPIC_SUFFIX.items()}
        self.partitions = kafka.input_partitions
        self._max_bytes = settings.limits.max_record_bytes
        self._max_future_ms = int(settings.limits.max_future_skew_seconds * 1000)
        self.processors: dict[int, PartitionProcessor] = {}
        self._last_update_flush: dict[int, float] = {}
        #: partition -> offset of the last input record whose effects are in the state.
        self.applied_offsets: dict[int, int] = {}
        #: partition -> record_crc of the record at its applied offset, once drained.
        self.applied_crcs: dict[int, int] = {}
        self._last_records: dict[int, RawRecord] = {}
        self.redelivered_skipped = 0
        self._pending = Drained()
        self._touched: set[int] = set()
        # Wall time for the latency histogram, refreshed once per batch: a clock
        # call per event was measurable, and the histogram's buckets are coarse.
        self._batch_wall_ms = self._wall_ms()
        self._event_counts: dict[tuple[str, str], int] = {}
        #: occurred_at of the events applied since the last drain (for the latency histogram).
        self._occurred: list[int] = []

    # -- partition lifecycle -------------------------------------------------

    def has_partition(self, partition: int) -> bool:
        return partition in self.processors

    def load_partition(self, partition: int, table_items: Iterable[tuple[Any, Any]]) -> int:
        """Rebuild a partition's processor from the state table (after assignment).

        ``table_items`` may hold keys of every partition; only this one's are loaded.
        Returns the number of customers restored.
        """
        processor = PartitionProcessor.from_settings(self.settings, partition=partition)
        restored = 0
        for key, value in items_of_partition(partition, table_items, self.partitions):
            if key.startswith(CLOCK_KEY_PREFIX):
                position = decode_position(value)
                if position.clock_ms is not None:
                    processor.load_clock(position.clock_ms)
                if position.applied_offset is not None:
                    self.applied_offsets[partition] = position.applied_offset
                if position.applied_crc is not None:
                    self.applied_crcs[partition] = position.applied_crc
                if position.rekeyed_offset is not None:
                    self.applied_rekeyed[partition] = position.rekeyed_offset
                if position.input_ended:
                    self._input_ended[partition] = position.input_end_ms
                if position.identity_ended:
                    self._identity_ended[partition] = set(position.identity_ended)
            else:
                processor.load_state(key, decode_table_state(value))
                restored += 1
        self.processors[partition] = processor
        self._reattributions[partition] = processor.reattribution.reattributions
        return restored

    def drop_partition(self, partition: int) -> None:
        self.processors.pop(partition, None)
        self._last_update_flush.pop(partition, None)
        self.applied_offsets.pop(partition, None)
        self.applied_crcs.pop(partition, None)
        self._last_records.pop(partition, None)
        self.applied_rekeyed.pop(partition, None)
        self._input_ended.pop(partition, None)
        self._identity_ended.pop(partition, None)
        self._reattributions.pop(partition, None)

    def forget_position(self, partition: int) -> None:
        """Stop skipping by offset on ``partition`` (its input log was recreated)."""
        self.applied_offsets.pop(partition, None)
        self.applied_crcs.pop(partition, None)

    def missing_before(
        self, partition: int, offset: int, topic: str | None = None
    ) -> tuple[int, int] | None:
        """``(start, end)``: the offsets between the last applied record and ``offset``.

        None when ``offset`` follows the last applied record directly (or is a
        redelivery, or nothing is known of the partition yet). The agent reads
        such a hole from the broker and handles it before the record at ``offset``.
        """
        if topic is not None and topic == self.rekeyed_topic:
            return offsets_missing_before(self.applied_rekeyed, partition, offset)
        return offsets_missing_before(self.applied_offsets, partition, offset)

    # -- records -------------------------------------------------------------

    def handle(self, record: RawRecord) -> None:
        """Process one consumed input (or re-keyed) record; results accumulate until
        :meth:`drain`."""
        if record.topic == self.rekeyed_topic:
            self._handle_rekeyed(record)
            return
        partition = record.partition
        offset = record.offset
        if is_redelivery(self.applied_offsets, partition, offset):
            # Redelivered after a restart: its effects are already in the state.
            self.redelivered_skipped += 1
            self.metrics.redelivered_record()
            return
        self.applied_offsets[partition] = offset
        self._last_records[partition] = record
        # Every record moves the stored position, also one that only becomes a
        # dead letter, so a redelivery never sends that dead letter twice.
        self._touched.add(partition)
        if record.headers and is_end_of_input(record.headers):
            self._end_of_input(record)
            return
        stage = "decode"
        try:
            decoded = self._event_codec.decode(record.value or b"")
            stage = "validate"
            event = validate(
                decoded,
                self.settings.channels,
                # The batch's wall time, as for the latency histogram: a clock call
                # per event was measurable, and the skew allowed is minutes.
                now_ms=self._batch_wall_ms,
                max_future_ms=self._max_future_ms,
                identity_events=self.identity,
            )
        except ContractError as exc:
            self._dead_letter(record, exc, exc.stage)
            return
        except Exception as exc:  # a codec or rule bug must not stop the worker
            self._dead_letter(record, exc, stage, unexpected=True)
            return
        if self.identity and needs_identity(event):
            # To the identity processor of its identifier, under the key the
            # producer library gives it (the record's own key may be another).
            self._rekey(record, record_key(event).encode(), self.identity_topic)
            return
        expected_key = event.customer_id.encode()
        if record.key != expected_key:
            self._rekey(record, expected_key)
            return
        counts = self._event_counts
        key = (event.channel, event.type)
        counts[key] = counts.get(key, 0) + 1
        processor = self._processor(record.partition)
        duplicates_before = processor.stats.duplicates
        try:
            outputs = processor.process(event)
        except Exception as exc:
            # The customer's state may be half changed: the exception can come
            # after some of its fields moved. It stays as it is (rolling back
            # would need a copy of every state before every event); the record
            # is dead-lettered and counted, and the partition goes on.
            self._dead_letter(record, exc, "process", unexpected=True)
            return
        if processor.stats.duplicates != duplicates_before:
            self.metrics.duplicate_event(event.channel)
        self._occurred.append(event.occurred_at)
        self._collect(record.partition, outputs, source=record)

    def _end_of_input(self, record: RawRecord) -> None:
        """Honour an end-of-input control record, or dead-letter it (stage ``control``)."""
        if not self.settings.worker.control_records:
            # Any producer that may write the input topic could close every
            # session of a partition with one header (issue 12).
            refused = ControlRecordRefused(
                "end-of-input control record refused: worker.control_records is false "
                "(turn it on only for a backfill or a replay through Kafka)"
            )
            self._dead_letter(record, refused, "control")
            return
        try:
            input_end_ms = input_end_of(record.value)
        except ControlRecordRefused as exc:
            self._dead_letter(record, exc, "control")
            return
        if self.identity:
            # The identity partition of the same number ends after the identity
            # events of this partition; this one after every identity partition.
            self._pending.outgoing.append(
                Outgoing(
                    self.identity_topic,
                    record.key,
                    record.value,
                    None,
                    list(record.headers),
                    partition=record.partition,
                )
            )
            self._input_ended[record.partition] = input_end_ms
            self._end_when_identity_ended(record.partition, record)
            return
        try:
            outputs = self._processor(record.partition).end_of_input(input_end_ms)
        except Exception as exc:
            self._dead_letter(record, exc, "process", unexpected=True)
            return
        self._collect(record.partition, outputs, source=record)

    def _handle_rekeyed(self, record: RawRecord) -> None:
        """An ``interactions-rekeyed`` record (:mod:`pipeline.identity_wire`)."""
        partition = record.partition
        if is_redelivery(self.applied_rekeyed, partition, record.offset):
            self.redelivered_skipped += 1
            self.metrics.redelivered_record()
            return
        self.applied_rekeyed[partition] = record.offset
        self._touched.add(partition)
        try:
            item = decode_rekeyed(record.value, record.headers, self._event_codec)
        except ContractError as exc:
            self._dead_letter(record, exc, exc.stage)
            return
        if isinstance(item, IdentityEnd):
            self._identity_ended.setdefault(partition, set()).add(item.identity_partition)
            self._end_when_identity_ended(partition, record)
            return
        processor = self._processor(partition)
        try:
            if isinstance(item, CustomerEvent):
                event = item.event
                key = (event.channel, event.type)
                self._event_counts[key] = self._event_counts.get(key, 0) + 1
                self._occurred.append(event.occurred_at)
                outputs = processor.process_released(event, item.identified_at)
            else:
                outputs = processor.unattribute(item.customer_key, item.event_ids)
        except Exception as exc:
            self._dead_letter(record, exc, "process", unexpected=True)
            return
        self._collect(partition, outputs, source=record)

    def _end_when_identity_ended(self, partition: int, record: RawRecord) -> None:
        """End the partition's input once its own marker and every identity
        partition's have come (what the identity stage released at its end is in)."""
        if partition not in self._input_ended:
            return
        if len(self._identity_ended.get(partition, ())) < self.partitions:
            return
        input_end_ms = self._input_ended.pop(partition)
        self._identity_ended.pop(partition, None)
        try:
            outputs = self._processor(partition).end_of_input(input_end_ms)
        except Exception as exc:
            self._dead_letter(record, exc, "process", unexpected=True)
            return
        self._collect(partition, outputs, source=record)

    def tick(self, partitions: Iterable[int]) -> None:
        """Advance the given partitions' clocks to wall time (live mode only)."""
        if self.settings.worker.clock != "live":
            return
        skew_ms = int(self.settings.worker.allowed_skew_seconds * 1000)
        now = self._wall_ms() - skew_ms
        for partition in partitions:
            self._collect(partition, self._processor(partition).advance(now))

    def gauges(self, partitions: Iterable[int]) -> dict[int, PartitionGauge]:
        """Open sessions, oldest running SLA clocks and clock of the given partitions."""
        return {p: partition_gauge(self.processors.get(p)) for p in partitions}

    def drain(self, *, force_updates: bool = False) -> Drained:
        """Everything produced since the last drain; see the module docstring."""
        now = time.monotonic()
        interval = self.settings.worker.session_update_seconds
        for partition in sorted(self._touched):
            processor = self._processor(partition)
            last = self._last_update_flush.get(partition, 0.0)
            if force_updates or now - last >= interval:
                self._last_update_flush[partition] = now
                self._collect(partition, processor.flush_updates(), touch=False)
            dirty: dict[str, bytes | None] = {
                customer: None if state is None else encode_table_state(state)
                for customer, state in processor.take_dirty().items()
            }
            applied_offset = self.applied_offsets.get(partition)
            last_record = self._last_records.pop(partition, None)
            if last_record is not None:
                self.applied_crcs[partition] = record_crc(last_record.key, last_record.value)
            rekeyed = self.applied_rekeyed.get(partition)
            if processor.clock_ms is not None or applied_offset is not None or rekeyed is not None:
                # Written last, so a restored position never runs ahead of the states.
                dirty[clock_key(partition)] = encode_position(
                    Position(
                        processor.clock_ms,
                        applied_offset,
                        self.applied_crcs.get(partition),
                        rekeyed,
                        partition in self._input_ended,
                        self._input_ended.get(partition),
                        tuple(sorted(self._identity_ended.get(partition, ()))),
                    )
                )
            rebuilt = processor.reattribution.reattributions
            if rebuilt != self._reattributions.get(partition, 0):
                self.identity_metrics.customers_rebuilt(
                    rebuilt - self._reattributions.get(partition, 0)
                )
                self._reattributions[partition] = rebuilt
            self._pending.state[partition] = dirty
        if self._event_counts:
            self.metrics.observe_events(self._event_counts)
            self._event_counts = {}
        if self._occurred:
            self.metrics.observe_processing_latencies(self._batch_wall_ms, self._occurred)
            self._occurred = []
        if self._pending.records:
            self.metrics.observe_outputs(self._pending.records)
        drained, self._pending = self._pending, Drained()
        self._touched = set()
        self._batch_wall_ms = self._wall_ms()
        return drained

    # -- helpers -------------------------------------------------------------

    def _processor(self, partition: int) -> PartitionProcessor:
        processor = self.processors.get(partition)
        if processor is None:
            processor = PartitionProcessor.from_settings(self.settings, partition=partition)
            self.processors[partition] = processor
        return processor

    def _collect(
        self,
        partition: int,
        outputs: Sequence[OutputRecord],
        *,
        touch: bool = True,
        source: RawRecord | None = None,
    ) -> None:
        """Encode ``outputs`` for sending; ``source`` is the input record that made them.

        An output that cannot be encoded, or is larger than the cap (a late
        event aside, whose payload is cut), is not sent: its input record is
        dead-lettered once (stage ``encode``), or, for outputs of a timer or a
        flush, a headers-only dead letter stands for it. The state has already
        moved: the customer's state holds the event's effects although the
        record that showed them is missing; a restart does not bring it back.
        """
        if touch:
            self._touched.add(partition)
        failure: Exception | None = None
        max_bytes = self._max_bytes
        for output in outputs:
            cls = type(output)
            topic = self._output_topics[cls]
            key = output.key.encode()
            headers: list[tuple[str, bytes]] | None = None
            try:
                value = self._record_codecs[cls].encode_record(output)
                if len(key) + len(value) > max_bytes:
                    capped = None
                    if isinstance(output, LateEvent):
                        capped = cap_late_event(
                            output, self._record_codecs[cls].encode, key, max_bytes
                        )
                    if capped is None:
                        raise RecordTooLargeError(
                            f"a {cls.OUTPUT_NAME} record of {len(key) + len(value)} bytes "
                            f"exceeds limits.max_record_bytes ({max_bytes}); not sent"
                        )
                    value, headers = capped
            except Exception as exc:
                if source is None:
                    self._unsent(topic, key, None, exc)
                elif failure is None:
                    failure = exc
                continue
            self._pending.records.append(output)
            # No event-time record timestamp (None) on purpose: Kafka's
            # time-based retention and segment rolling read record timestamps,
            # so a backfill of last month's events would be deleted on arrival.
            # Event time is in the payload.
            self._pending.outgoing.append(Outgoing(topic, key, value, None, headers))
        if failure is not None and source is not None:
            self._dead_letter(source, failure, "encode")

    def _unsent(self, topic: str, key: bytes, value: bytes | None, exc: Exception) -> None:
        """A headers-only dead letter for an output of no input record (a timer, a flush)."""
        letter = build_unsent_dead_letter(
            topic=topic,
            partition=None,
            key=key,
            value=value,
            error=exc,
            stage="encode",
            now_ms=self._wall_ms(),
        )
        self.metrics.dead_letter("encode", type(exc).__name__)
        self._pending.outgoing.append(
            Outgoing(topic=self.dlq_topic, key=letter.key, value=None, headers=letter.headers)
        )

    def _dead_letter(
        self, record: RawRecord, exc: Exception, stage: str, *, unexpected: bool = False
    ) -> None:
        self._pending.outgoing.append(
            dead_letter_of(
                record,
                exc,
                stage,
                metrics=self.metrics,
                unexpected=unexpected,
                dlq_topic=self.dlq_topic,
                now_ms=self._wall_ms(),
                max_bytes=self._max_bytes,
            )
        )

    def _rekey(self, record: RawRecord, key: bytes, topic: str | None = None) -> None:
        """Send ``record`` again under ``key``: to the input (a customer's event
        keyed otherwise) or to ``topic`` (an identity event, to the identity topic)."""
        headers = list(record.headers) or None
        size = record_size(key, record.value, headers)
        if size > self._max_bytes:
            too_large = RecordTooLargeError(
                f"the record re-keyed by customer_id would be {size} bytes, over "
                f"limits.max_record_bytes ({self._max_bytes}); not sent"
            )
            self._dead_letter(record, too_large, "encode")
            return
        if topic is None:
            self.metrics.rekeyed_event()
        self._pending.outgoing.append(
            Outgoing(
                topic=topic or self.input_topic,
                key=key,
                value=record.value,
                timestamp_ms=record.timestamp_ms,
                headers=headers,
            )
        )
