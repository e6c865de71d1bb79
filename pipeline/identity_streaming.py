"""The worker's identity processors: ``identity`` records in, re-keyed records out.

The identity side of the worker (issue 16, docs/architecture.md "Identity
continuity"), without Kafka, as :class:`pipeline.streaming.StreamHandler` is
the customers' side. One :class:`~pipeline.core.identity.IdentityProcessor`
per ``identity`` partition the worker holds (one
:class:`~pipeline.core.identity_stage.IdentityStage` for them all). Per record:

* the forwarded event is decoded and validated again (the forward keeps the
  producer's bytes) and applied; what identity gives or takes back goes to
  ``interactions-rekeyed`` keyed by the customer (:mod:`pipeline.identity_wire`),
  the changed link periods to ``identity-links`` keyed by ``link_id``;
* a forwarded end-of-input marker ends the partition: held events go out as the
  anonymous customer, then an end marker to every re-keyed partition;
* anything that fails becomes a dead letter, and the partition goes on.

:meth:`IdentityHandler.drain` hands back the records and the partition's
state for ``cxstream-<prefix>-process-identity-state-changelog``: each changed
identifier (``<kind>:<value>`` -> its state, LZ4-compressed JSON; None evicts)
and the partition's :class:`~pipeline.stream_state.Position` last (its clock
and the offset of the last identity record whose effects the state holds). The
loop writes them with the one commit function, so the order is the customers'
one: re-keyed records acknowledged, then state, then offsets (or one
transaction); a redelivered record at or below the stored offset is skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pipeline.contract.codec import EventCodec, RecordCodec
from pipeline.contract.event import needs_identity
from pipeline.contract.validate import validate
from pipeline.core.identity import IdentityLinkRecord, IdentityRules
from pipeline.core.identity_stage import IdentityStage, Routed, route
from pipeline.errors import (
    ContractError,
    ControlRecordRefused,
    RecordTooLargeError,
    ValidationError,
)
from pipeline.identity_wire import Wire, encode_routed, end_marker
from pipeline.settings import Settings
from pipeline.stream_records import (
    Drained,
    IdentityMetricsSink,
    MetricsSink,
    NoIdentityMetrics,
    NoMetrics,
    Outgoing,
    RawRecord,
    dead_letter_of,
    input_end_of,
    is_end_of_input,
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
    offsets_missing_before,
    record_crc,
)
from pipeline.topics import DLQ, IDENTITY, IDENTITY_LINKS, REKEYED


class IdentityHandler:
    """Applies ``identity`` records to the identity processors of their partitions."""

    def __init__(
        self,
        settings: Settings,
        *,
        pseudonym_key: bytes | None = None,
        metrics: MetricsSink | None = None,
        identity_metrics: IdentityMetricsSink | None = None,
        wall_clock_ms: Callable[[], int] | None = None,
    ) -> None:
        """``pseudonym_key``: the sink's key (``sql.pseudonym_key_file``) for the
        anonymous customers and the link rows, as the replay takes it."""
        self.settings = settings
        self.metrics: MetricsSink = metrics or NoMetrics()
        self.identity_metrics: IdentityMetricsSink = identity_metrics or NoIdentityMetrics()
        self._wall_ms = wall_clock_ms or (lambda: int(time.time() * 1000))
        kafka = settings.kafka
        self.partitions = kafka.input_partitions
        self.identity_topic = kafka.topic(IDENTITY)
        self.rekeyed_topic = kafka.topic(REKEYED)
        self.links_topic = kafka.topic(IDENTITY_LINKS)
        self.dlq_topic = kafka.topic(DLQ)
        self.stage = IdentityStage(
            IdentityRules.from_settings(settings.identity, pseudonym_key), self.partitions
        )
        self._event_codec = EventCodec()
        self._link_codec = RecordCodec(IdentityLinkRecord.OUTPUT_NAME)
        self._max_bytes = settings.limits.max_record_bytes
        self._max_future_ms = int(settings.limits.max_future_skew_seconds * 1000)
        #: partition -> offset of the last identity record whose effects are in the state.
        self.applied_offsets: dict[int, int] = {}
        self.applied_crcs: dict[int, int] = {}
        self._last_records: dict[int, RawRecord] = {}
        self.loaded: set[int] = set()
        self._touched: set[int] = set()
        self._outgoing: list[Outgoing] = []

    # -- partition lifecycle -----------------------------------------------------

    def load_partition(self, partition: int, entries: Iterable[tuple[Any, Any]]) -> int:
        """Restore an identity partition from its changelog partition's entries;
        returns the identifiers restored."""
        self.stage.processors.pop(partition, None)
        self.stage.processor(partition)
        restored = 0
        for raw_key, value in entries:
            if value is None:
                continue
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            if key.startswith(CLOCK_KEY_PREFIX):
                if key != clock_key(partition):
                    continue
                position = decode_position(value)
                if position.clock_ms is not None:
                    self.stage.load_clock(partition, position.clock_ms)
                if position.applied_offset is not None:
                    self.applied_offsets[partition] = position.applied_offset
                if position.applied_crc is not None:
                    self.applied_crcs[partition] = position.applied_crc
            else:
                self.stage.load_state(partition, key, json.loads(decode_table_state(value)))
                restored += 1
        self.loaded.add(partition)
        return restored

    def drop_partition(self, partition: int) -> None:
        self.stage.processors.pop(partition, None)
        self.applied_offsets.pop(partition, None)
        self.applied_crcs.pop(partition, None)
        self._last_records.pop(partition, None)
        self.loaded.discard(partition)
        self._touched.discard(partition)

    def missing_before(self, partition: int, offset: int) -> tuple[int, int] | None:
        return offsets_missing_before(self.applied_offsets, partition, offset)

    # -- records -----------------------------------------------------------------

    def handle(self, record: RawRecord) -> None:
        """Apply one ``identity`` record; results accumulate until :meth:`drain`."""
        partition = record.partition
        if is_redelivery(self.applied_offsets, partition, record.offset):
            self.metrics.redelivered_record()
            return
        self.applied_offsets[partition] = record.offset
        self._last_records[partition] = record
        self._touched.add(partition)
        processor = self.stage.processor(partition)
        if record.headers and is_end_of_input(record.headers):
            # Forwarded by the customers' side, which already checked that
            # control records are allowed.
            try:
                input_end_ms = input_end_of(record.value)
            except ControlRecordRefused as exc:
                self._dead_letter(record, exc, "control")
                return
            self._send(route(processor.end_of_input(input_end_ms)))
            for target in range(self.partitions):
                self._append(self.rekeyed_topic, end_marker(partition, input_end_ms), target)
            return
        stage = "decode"
        try:
            event = self._event_codec.decode(record.value or b"")
            stage = "validate"
            event = validate(
                event,
                self.settings.channels,
                now_ms=self._wall_ms(),
                max_future_ms=self._max_future_ms,
                identity_events=True,
            )
            if not needs_identity(event):
                raise ValidationError(
                    f"event {event.event_id} has a customer and is not identified/unlinked: "
                    "not for the identity topic",
                    field="customer_id",
                )
            stage = "process"
            routed = route(processor.process(event))
        except ContractError as exc:
            self._dead_letter(record, exc, exc.stage)
            return
        except Exception as exc:  # a rule or codec bug must not stop the worker
            self._dead_letter(record, exc, stage, unexpected=True)
            return
        self._send(routed)

    def tick(self, partitions: Iterable[int]) -> None:
        """Advance the given partitions' clocks to wall time (live mode only)."""
        worker = self.settings.worker
        if worker.clock != "live":
            return
        now = self._wall_ms() - int(worker.allowed_skew_seconds * 1000)
        for partition in partitions:
            self._send(route(self.stage.processor(partition).advance(now)))
            self._touched.add(partition)

    def drain(self) -> Drained:
        """The records to send and each touched partition's state, position last."""
        drained = Drained(outgoing=self._outgoing)
        self._outgoing = []
        for partition in sorted(self._touched):
            processor = self.stage.processor(partition)
            for link in processor.take_link_rows():
                self._outgoing_link(link, drained)
            changes: dict[str, bytes | None] = {
                key: None if state is None else encode_table_state(json.dumps(state).encode())
                for key, state in processor.take_dirty().items()
            }
            last = self._last_records.pop(partition, None)
            if last is not None:
                self.applied_crcs[partition] = record_crc(last.key, last.value)
            applied = self.applied_offsets.get(partition)
            if processor.clock_ms is not None or applied is not None:
                changes[clock_key(partition)] = encode_position(
                    Position(processor.clock_ms, applied, self.applied_crcs.get(partition))
                )
            drained.state[partition] = changes
        self._touched = set()
        self.identity_metrics.observe(self.stage.take_measures(), self.stage.held_now())
        return drained

    # -- helpers -----------------------------------------------------------------

    def _send(self, routed: Sequence[Routed]) -> None:
        for item in routed:
            self._append(self.rekeyed_topic, encode_routed(item, self._event_codec), None)

    def _append(self, topic: str, wire: Wire, partition: int | None) -> None:
        self._outgoing.append(
            Outgoing(topic, wire.key, wire.value, None, list(wire.headers), partition=partition)
        )

    def _outgoing_link(self, link: IdentityLinkRecord, drained: Drained) -> None:
        key = link.key.encode()
        value = self._link_codec.encode_record(link)
        if len(key) + len(value) > self._max_bytes:  # cannot happen: a few short fields
            raise RecordTooLargeError(f"identity link {link.key} over the record cap")
        drained.outgoing.append(Outgoing(self.links_topic, key, value))

    def _dead_letter(
        self, record: RawRecord, exc: Exception, stage: str, *, unexpected: bool = False
    ) -> None:
        self._outgoing.append(
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
