"""Dead-letter records: a rejected input record, untouched, plus why it was rejected.

The dead-letter topic (``<prefix>.dlq``) gets the original key, value and
timestamp byte for byte, so the record can be inspected, fixed at the source and
re-sent. The reason travels in headers (UTF-8 values)::

    cx.dlq.source.topic        topic the record came from
    cx.dlq.source.partition    its partition
    cx.dlq.source.offset       its offset
    cx.dlq.stage               decode | validate | ... (where it failed)
    cx.dlq.error.class         e.g. UnknownSchemaError
    cx.dlq.error.message       the error text (names the field for validation)
    cx.dlq.error.field         the field, for validation errors (absent otherwise)
    cx.dlq.processor.version   cxstream version that rejected it
    cx.dlq.time                when it was rejected, ISO-8601 UTC

:func:`build_dead_letter` is pure (the Faust worker sends its result through its own
producer); :class:`KafkaDeadLetterWriter` sends through kafka-python.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pipeline
from pipeline.contract.event import ms_to_iso
from pipeline.errors import DeliveryError

HEADER_PREFIX = "cx.dlq."
SOURCE_TOPIC = "cx.dlq.source.topic"
SOURCE_PARTITION = "cx.dlq.source.partition"
SOURCE_OFFSET = "cx.dlq.source.offset"
STAGE = "cx.dlq.stage"
ERROR_CLASS = "cx.dlq.error.class"
ERROR_MESSAGE = "cx.dlq.error.message"
ERROR_FIELD = "cx.dlq.error.field"
PROCESSOR_VERSION = "cx.dlq.processor.version"
TIME = "cx.dlq.time"

# Kafka headers are small metadata; a huge error text (e.g. a repr of a big value)
# is cut so the dead letter itself cannot exceed the broker's message size.
MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What goes to the dead-letter topic: the original record plus reason headers."""

    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def build_dead_letter(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int | None,
    error: Exception,
    stage: str | None = None,
    now_ms: int,
) -> DeadLetter:
    """The dead letter for a record that failed at ``stage``.

    ``stage`` defaults to the error's own ``stage`` (``decode``/``validate`` for
    contract errors), else ``process``. Key, value and timestamp are kept as given.
    """
    stage = stage or getattr(error, "stage", None) or "process"
    message = str(error) or type(error).__name__
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    headers: list[tuple[str, str]] = [
        (SOURCE_TOPIC, source_topic),
        (SOURCE_PARTITION, str(partition)),
        (SOURCE_OFFSET, str(offset)),
        (STAGE, stage),
        (ERROR_CLASS, type(error).__name__),
        (ERROR_MESSAGE, message),
    ]
    error_field = getattr(error, "field", None)
    if error_field:
        headers.append((ERROR_FIELD, str(error_field)))
    headers += [(PROCESSOR_VERSION, pipeline.__version__), (TIME, ms_to_iso(now_ms))]
    return DeadLetter(
        key=key,
        value=value,
        timestamp_ms=timestamp_ms,
        headers=[(name, text.encode("utf-8")) for name, text in headers],
    )


def parse_dead_letter_headers(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    """The ``cx.dlq.*`` headers of a record as text (other headers are left out)."""
    return {
        name: (raw or b"").decode("utf-8", errors="replace")
        for name, raw in headers
        if name.startswith(HEADER_PREFIX)
    }


class KafkaDeadLetterWriter:
    """Sends dead letters to one topic with kafka-python; ``acks=all``.

    ``write`` returns once the record is queued; ``flush`` waits for the broker and
    raises :class:`DeliveryError` if a dead letter was not acknowledged, so a
    caller commits source offsets only after its dead letters are safe.
    """

    def __init__(self, bootstrap: str, topic: str, **overrides: Any) -> None:
        from kafka import KafkaProducer  # kept local: pure users of this module need no client

        config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "acks": "all",
            "linger_ms": 5,
            "client_id": "cxstream-dlq",
            **overrides,
        }
        self.topic = topic
        self._producer = KafkaProducer(**config)
        self._failures: list[Exception] = []

    def write(self, dead_letter: DeadLetter) -> Any:
        """Queue ``dead_letter``; returns kafka-python's future."""
        future = self._producer.send(
            self.topic,
            key=dead_letter.key,
            value=dead_letter.value,
            headers=dead_letter.headers,
            timestamp_ms=dead_letter.timestamp_ms,
        )
        future.add_errback(self._failures.append)
        return future

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryError(
                f"{len(failures)} dead letters to {self.topic} were not delivered: {failures[0]}"
            )

    def close(self, timeout: float | None = None) -> None:
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)

    def __enter__(self) -> KafkaDeadLetterWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
