"""The records and seams of the streaming step (:mod:`pipeline.streaming`), without Kafka.

A consumed record (:class:`RawRecord`), a record to send (:class:`Outgoing`),
what a batch produced (:class:`Drained`), what the gauges show of a partition
and what the handlers report to the metrics. The identity handler
(:mod:`pipeline.identity_streaming`) shares them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from pipeline.core.identity import IdentityMeasures
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import OutputRecord
from pipeline.dlq import build_dead_letter
from pipeline.errors import ControlRecordRefused

log = logging.getLogger(__name__)

#: Header that marks a control record (the input topic, and the identity
#: topics the worker forwards it to).
CONTROL_HEADER = "cx-control"
#: Control value: the input of this partition has ended; close everything.
END_OF_INPUT = b"end-of-input"


class PartitionGauge(NamedTuple):
    """What the worker's gauges show of one partition."""

    open_sessions: int
    #: channel -> start (event time, ms) of the oldest running SLA clock.
    oldest_open_sla_clock: dict[str, int]
    #: The partition's clock; None before its first event.
    clock_ms: int | None
    #: channel -> contacts with a running SLA clock (customer waiting for a reply).
    waiting_contacts: Mapping[str, int] = {}


def partition_gauge(processor: PartitionProcessor | None) -> PartitionGauge:
    """What the gauges show of a partition's processor (None: not loaded)."""
    if processor is None:
        return PartitionGauge(0, {}, None)
    return PartitionGauge(
        processor.open_sessions(),
        processor.oldest_open_sla_clock(),
        processor.clock_ms,
        processor.waiting_contacts(),
    )


class RawRecord(NamedTuple):
    """A consumed Kafka record, as the agent sees it.

    Named tuples, this and :class:`Outgoing`: one of each is built per record,
    and a frozen dataclass's ``__init__`` (a ``object.__setattr__`` per field)
    cost several times as much.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: Sequence[tuple[str, bytes]] = ()


class Outgoing(NamedTuple):
    """A record the agent must send; ``partition`` None means by key."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: Sequence[tuple[str, bytes]] | None = None
    partition: int | None = None


def dead_letter_of(
    record: RawRecord,
    exc: Exception,
    stage: str,
    *,
    metrics: MetricsSink,
    unexpected: bool,
    dlq_topic: str,
    now_ms: int,
    max_bytes: int,
) -> Outgoing:
    """The dead letter of a consumed ``record`` that failed at ``stage`` with ``exc``
    (:func:`pipeline.dlq.build_dead_letter`), as a record to send to ``dlq_topic``;
    counted in ``metrics``, and logged with its traceback when ``unexpected`` (not a
    contract error: a bug, or a record nobody foresaw; the worker goes on)."""
    if unexpected:
        log.warning(
            "record %s/%s/%s dead-lettered at stage %s: %r",
            record.topic,
            record.partition,
            record.offset,
            stage,
            exc,
            exc_info=exc,
        )
    metrics.dead_letter(stage, type(exc).__name__)
    letter = build_dead_letter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        timestamp_ms=record.timestamp_ms,
        error=exc,
        stage=stage,
        now_ms=now_ms,
        max_bytes=max_bytes,
    )
    return Outgoing(
        topic=dlq_topic,
        key=letter.key,
        value=letter.value,
        timestamp_ms=letter.timestamp_ms,
        headers=letter.headers,
    )


@dataclass(slots=True)
class Drained:
    """What one batch (or one timer tick) produced."""

    outgoing: list[Outgoing] = field(default_factory=list)
    #: partition -> {table key -> serialized value, None = delete}. Clock keys last.
    state: dict[int, dict[str, bytes | None]] = field(default_factory=dict)
    records: list[OutputRecord] = field(default_factory=list)


class MetricsSink(Protocol):
    """What the handler reports; ``pipeline.metrics.Metrics`` implements it."""

    def observe_events(self, counts: Mapping[tuple[str, str], int]) -> None: ...
    def observe_outputs(self, records: Iterable[Any]) -> None: ...
    def dead_letter(self, stage: str, reason: str) -> None: ...
    def duplicate_event(self, channel: str) -> None: ...
    def rekeyed_event(self) -> None: ...
    def redelivered_record(self) -> None: ...
    def observe_processing_latencies(
        self, processed_ms: int, occurred_ms: Iterable[int]
    ) -> None: ...


class NoMetrics:
    """Reports nothing (a handler built without metrics)."""

    def observe_events(self, counts: Mapping[tuple[str, str], int]) -> None:
        pass

    def observe_outputs(self, records: Iterable[Any]) -> None:
        pass

    def dead_letter(self, stage: str, reason: str) -> None:
        pass

    def duplicate_event(self, channel: str) -> None:
        pass

    def rekeyed_event(self) -> None:
        pass

    def redelivered_record(self) -> None:
        pass

    def observe_processing_latencies(self, processed_ms: int, occurred_ms: Iterable[int]) -> None:
        pass


class IdentityMetricsSink(Protocol):
    """What the identity wiring reports (issue 16);
    :class:`pipeline.identity_metrics.IdentityMetrics` implements it."""

    def observe(self, measures: IdentityMeasures, held_now: int) -> None: ...
    def customers_rebuilt(self, count: int) -> None: ...


class NoIdentityMetrics:
    """Reports nothing (a handler built without metrics)."""

    def observe(self, measures: IdentityMeasures, held_now: int) -> None:
        pass

    def customers_rebuilt(self, count: int) -> None:
        pass


def input_end_of(value: bytes | None) -> int | None:
    """The input's end (event time, ms) an end-of-input record carries, or None.

    The sender of a backfill knows the latest event time of the whole input
    and puts it in the value (decimal ASCII), so every partition ends there, as
    ``cxstream replay`` ends them (docs/architecture.md, "End of input"); a
    marker without a value ends the partition at its own latest event.
    """
    if not value:
        return None
    try:
        return int(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ControlRecordRefused(
            f"end-of-input control record value {value[:40]!r} is not epoch milliseconds"
        ) from None


def is_end_of_input(headers: Sequence[tuple[str, bytes]]) -> bool:
    return any(name == CONTROL_HEADER and value == END_OF_INPUT for name, value in headers)
