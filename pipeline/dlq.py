"""Dead-letter records: a rejected input record, untouched, plus why it was rejected.

The dead-letter topic (``<prefix>.dlq``) gets the original value and timestamp
byte for byte, so the record can be inspected, fixed at the source and re-sent.
Its key is :func:`dead_letter_key` (``<source topic>/<partition>/<offset>``), the
same every time the record is rejected: a worker killed with SIGKILL can send a
dead letter again after its restart, and a reader collapses the copies by key.
The reason travels in headers (UTF-8 values, the source key as it was)::

    cx.dlq.source.topic        topic the record came from
    cx.dlq.source.partition    its partition
    cx.dlq.source.offset       its offset
    cx.dlq.source.key          the record's own key (absent when it had none)
    cx.dlq.stage               decode | validate | control | process | encode | send | sink
    cx.dlq.error.class         e.g. UnknownSchemaError
    cx.dlq.error.message       the error text (names the field for validation)
    cx.dlq.error.field         the field, for validation errors (absent otherwise)
    cx.dlq.processor.version   cxstream version that rejected it
    cx.dlq.time                when it was rejected, ISO-8601 UTC
    cx.dlq.truncated           what was cut to fit the size cap: value[,source.key]
    cx.dlq.value.sha256        hex digest of the whole original value (when cut)
    cx.dlq.value.bytes         the original value's size (when cut)

A dead letter never exceeds ``limits.max_record_bytes`` (key, value and headers
counted): a record too large for the broker would stop the worker that sends it
(issue 12). :func:`build_unsent_dead_letter` is the headers-only letter for a
record that was built but could not be sent (no input offset of its own: its
key is the destination and a digest, as stable across re-sends).

:func:`build_dead_letter` is pure (the Faust worker sends its result through its own
producer); :class:`KafkaDeadLetterWriter` sends through kafka-python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pipeline
from pipeline.contract.event import ms_to_iso
from pipeline.errors import DeliveryError
from pipeline.settings import KafkaSettings

HEADER_PREFIX = "cx.dlq."
SOURCE_TOPIC = "cx.dlq.source.topic"
SOURCE_PARTITION = "cx.dlq.source.partition"
SOURCE_OFFSET = "cx.dlq.source.offset"
SOURCE_KEY = "cx.dlq.source.key"
TARGET_TOPIC = "cx.dlq.target.topic"
TARGET_PARTITION = "cx.dlq.target.partition"
TRUNCATED = "cx.dlq.truncated"
VALUE_SHA256 = "cx.dlq.value.sha256"
VALUE_BYTES = "cx.dlq.value.bytes"
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


def dead_letter_key(topic: str, partition: int, offset: int) -> bytes:
    """The dead letter's Kafka key: the same for every copy of one rejected record."""
    return f"{topic}/{partition}/{offset}".encode()


def record_size(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None = None
) -> int:
    """What a record weighs against ``limits.max_record_bytes``: key, value and headers.

    Kafka adds a few dozen bytes of framing per record; the cap's default
    (900,000) leaves the broker's 1 MiB default room for them.
    """
    size = len(key or b"") + len(value or b"")
    for name, header_value in headers or ():
        size += len(name.encode("utf-8")) + len(header_value or b"")
    return size


def build_dead_letter(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int | None,
    error: BaseException,
    stage: str | None = None,
    now_ms: int,
    max_bytes: int | None = None,
) -> DeadLetter:
    """The dead letter for a record that failed at ``stage``.

    ``stage`` defaults to the error's own ``stage`` (``decode``/``validate`` for
    contract errors), else ``process``. Value and timestamp are kept as given
    unless the letter would exceed ``max_bytes``: then the value is cut to fit
    (and, for a giant key, the source-key header too), and headers carry the
    digest and size of the whole value.
    """
    headers = _reason_headers(stage or getattr(error, "stage", None) or "process", error)
    source = [
        (SOURCE_TOPIC, source_topic.encode("utf-8")),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
    ]
    if key is not None:
        source.append((SOURCE_KEY, key))
    headers = source + headers + _stamp(now_ms)
    letter_key = dead_letter_key(source_topic, partition, offset)
    if max_bytes is None or record_size(letter_key, value, headers) <= max_bytes:
        return DeadLetter(key=letter_key, value=value, timestamp_ms=timestamp_ms, headers=headers)
    original = value or b""
    cut = ["value"]
    headers += [
        (VALUE_SHA256, hashlib.sha256(original).hexdigest().encode()),
        (VALUE_BYTES, str(len(original)).encode()),
    ]
    # The longest a truncation marker can be, counted before it is known.
    room = max_bytes - record_size(letter_key, None, headers) - len(TRUNCATED) - 16
    if room < 0 and key is not None:
        cut.append("source.key")
        kept_key = key[: max(0, len(key) + room)]
        headers = [(n, kept_key if n == SOURCE_KEY else v) for n, v in headers]
        room = 0
    headers.append((TRUNCATED, ",".join(cut).encode()))
    return DeadLetter(
        key=letter_key,
        value=original[: max(0, room)],
        timestamp_ms=timestamp_ms,
        headers=headers,
    )


def build_unsent_dead_letter(
    *,
    topic: str,
    partition: int | None,
    key: bytes | None,
    value: bytes | None,
    error: BaseException,
    stage: str,
    now_ms: int,
) -> DeadLetter:
    """A headers-only dead letter for a record the pipeline built but could not send.

    Such a record (an output, a re-keyed input) has no input offset of its own,
    so the letter's key is ``<topic>/<partition or "any">/sha256:<digest>`` of
    its key and value: a re-send after a restart gives the same key. The value is
    left out (it is what could not be sent); its digest and size are in headers.
    """
    original = value or b""
    digest = hashlib.sha256(len(key or b"").to_bytes(4, "big") + (key or b"") + original)
    letter_key = f"{topic}/{'any' if partition is None else partition}/sha256:"
    headers = [(TARGET_TOPIC, topic.encode("utf-8"))]
    if partition is not None:
        headers.append((TARGET_PARTITION, str(partition).encode()))
    if key is not None:
        headers.append((SOURCE_KEY, key[:MAX_MESSAGE_CHARS]))
    headers += _reason_headers(stage, error) + _stamp(now_ms)
    headers += [
        (VALUE_SHA256, hashlib.sha256(original).hexdigest().encode()),
        (VALUE_BYTES, str(len(original)).encode()),
        (TRUNCATED, b"value"),
    ]
    return DeadLetter(
        key=(letter_key + digest.hexdigest()[:32]).encode(),
        value=None,
        timestamp_ms=None,
        headers=headers,
    )


def _reason_headers(stage: str, error: BaseException) -> list[tuple[str, bytes]]:
    message = str(error) or type(error).__name__
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    headers = [
        (STAGE, stage),
        (ERROR_CLASS, type(error).__name__),
        (ERROR_MESSAGE, message),
    ]
    error_field = getattr(error, "field", None)
    if error_field:
        headers.append((ERROR_FIELD, str(error_field)))
    return [(name, text.encode("utf-8")) for name, text in headers]


def _stamp(now_ms: int) -> list[tuple[str, bytes]]:
    return [
        (PROCESSOR_VERSION, pipeline.__version__.encode("utf-8")),
        (TIME, ms_to_iso(now_ms).encode("utf-8")),
    ]


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

    def __init__(self, kafka: KafkaSettings, topic: str, **overrides: Any) -> None:
        from kafka import KafkaProducer  # kept local: pure users of this module need no client

        from pipeline.kafka_clients import check_login, kafka_python_options

        check_login(kafka)
        config: dict[str, Any] = {
            "acks": "all",
            "linger_ms": 5,
            "client_id": "cxstream-dlq",
            **overrides,
        }
        self.topic = topic
        self._producer = KafkaProducer(**{**kafka_python_options(kafka), **config})
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
