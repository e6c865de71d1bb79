"""The producer library channel teams use to send events to cxstream.

::

    from pipeline.producer import EventProducer
    from pipeline.settings_loader import load_settings

    settings = load_settings()
    with EventProducer(settings.kafka, settings.kafka.topic("interactions"),
                       settings.channels) as producer:
        producer.send(event)          # validates, encodes, keys it (see below)
        producer.flush(10)            # raises DeliveryError if anything was lost

Guarantees: an event that breaks the contract raises :class:`ValidationError` and
nothing is sent; records are keyed by ``customer_id`` so one customer's events stay
ordered on one partition, and an event for the identity processor (no customer yet,
``identified``, ``unlinked``) by ``id:<kind>:<value>``, so one identifier's events stay
ordered (docs/producers.md, "Identifiers"); ``acks=all`` plus idempotence means a
retried send neither loses nor duplicates a record within the producer session. The
connection and its security (SASL/SCRAM, TLS) come from the ``KafkaSettings`` given; a
refused login raises :class:`~pipeline.errors.KafkaAuthError` at construction, not after
a timeout.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.contract.codec import EventCodec
from pipeline.contract.event import InteractionEvent, record_key
from pipeline.contract.jsonform import read_events
from pipeline.contract.validate import validate
from pipeline.errors import ContractError, DeliveryError
from pipeline.kafka_clients import check_login, kafka_python_options
from pipeline.settings import ChannelRegistry, KafkaSettings, LimitSettings


class SendClient(Protocol):
    """The narrow seam to Kafka: what :class:`EventProducer` needs of a client."""

    def send(self, topic: str, *, key: bytes | None, value: bytes) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


def kafka_client(kafka: KafkaSettings, client_id: str, **overrides: Any) -> SendClient:
    """A kafka-python producer with the settings the contract promises.

    Raises :class:`~pipeline.errors.KafkaAuthError` if the broker refuses the login.
    """
    from kafka import KafkaProducer

    check_login(kafka)
    config: dict[str, Any] = {
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        # A few ms of batching costs little latency next to the SLA targets
        # (seconds to hours) and multiplies throughput.
        "linger_ms": 5,
        **overrides,
    }
    producer: SendClient = KafkaProducer(**{**kafka_python_options(kafka), **config})
    return producer


class EventProducer:
    """Validates, encodes and sends events; collects delivery failures for ``flush``."""

    #: Refuse events dated further than this ahead of the wall clock. The default
    #: is ``limits.max_future_skew``'s; a producer set for a worker with a tighter
    #: limit sets this attribute to that limit in milliseconds.
    max_future_ms: int = round(LimitSettings().max_future_skew_seconds * 1000)

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        channels: ChannelRegistry,
        *,
        codec: EventCodec | None = None,
        client_id: str = "cxstream-producer",
        client: SendClient | None = None,
        **overrides: Any,
    ) -> None:
        """``client`` replaces the kafka-python producer (tests pass a double);
        ``overrides`` go to :class:`kafka.KafkaProducer` (e.g. ``linger_ms``)."""
        self.topic = topic
        self.channels = channels
        self.codec = codec or EventCodec()
        self._client = client or kafka_client(kafka, client_id, **overrides)
        self._failures: list[BaseException] = []
        self.sent = 0

    def send(self, event: InteractionEvent) -> Any:
        """Validate and send ``event``; returns the client's future.

        Raises :class:`ValidationError` (naming the field) before anything is sent,
        also for an event dated more than ``max_future_ms`` after this machine's
        wall clock: the worker would dead-letter it (``limits.max_future_skew``).
        """
        validate(
            event,
            self.channels,
            now_ms=time.time_ns() // 1_000_000,
            max_future_ms=self.max_future_ms,
            # Issue 16: the worker routes them to its identity processor.
            identity_events=True,
        )
        return self._send(record_key(event).encode("utf-8"), self.codec.encode(event))

    def send_raw(self, key: bytes | None, value: bytes) -> Any:
        """Send bytes as they are, unchecked (the simulator's malformed share)."""
        return self._send(key, value)

    def _send(self, key: bytes | None, value: bytes) -> Any:
        future = self._client.send(self.topic, key=key, value=value)
        future.add_errback(self._failures.append)
        self.sent += 1
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is acknowledged.

        Raises :class:`DeliveryError` if the wait timed out or any record sent since
        the last flush failed; the failures are reported once.
        """
        try:
            self._client.flush(timeout=timeout)
        except Exception as exc:  # kafka-python raises KafkaTimeoutError and others
            raise DeliveryError(f"flush to {self.topic} did not complete: {exc}") from exc
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryError(
                f"{len(failures)} records to {self.topic} were not delivered; "
                f"first: {type(failures[0]).__name__}: {failures[0]}"
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release the client (also if the flush raised)."""
        try:
            self.flush(timeout)
        finally:
            self._client.close(timeout=timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:  # do not hide the original error behind a DeliveryError
            with contextlib.suppress(DeliveryError):
                self.close()


@dataclass(frozen=True, slots=True)
class ProduceReport:
    """Outcome of :func:`produce_file`: how many were sent, which lines were rejected."""

    sent: int
    rejected: list[tuple[int, ContractError]] = field(default_factory=list)
    #: Latest event time of the events sent (what an end-of-input marker carries).
    input_end_ms: int | None = None


def produce_file(
    path: str | Path, producer: EventProducer, *, flush_timeout: float | None = 60
) -> ProduceReport:
    """Send every valid event of a JSONL file; report the invalid lines.

    Bad lines (bad JSON, wrong shape, broken rules) are collected with their line
    number and never stop the file. Flushes at the end, so a delivery failure
    raises :class:`DeliveryError`.
    """
    from pipeline.progress import Progress, count_lines

    sent = 0
    input_end_ms: int | None = None
    rejected: list[tuple[int, ContractError]] = []
    # Progress on stderr (a bar on a terminal); the summary stays on stdout.
    with Progress("produce", count_lines(path)) as progress:
        for number, parsed, _raw in read_events(path):
            progress.advance()
            if isinstance(parsed, ContractError):
                rejected.append((number, parsed))
                continue
            try:
                producer.send(parsed)
            except ContractError as exc:
                rejected.append((number, exc))
                continue
            sent += 1
            if input_end_ms is None or parsed.occurred_at > input_end_ms:
                input_end_ms = parsed.occurred_at
    producer.flush(flush_timeout)
    return ProduceReport(sent=sent, rejected=rejected, input_end_ms=input_end_ms)
