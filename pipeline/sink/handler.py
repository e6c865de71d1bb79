"""One batch of the sink: output records -> SQL rows or dead letters, nothing lost.

:meth:`SinkBatchHandler.handle` returns only when every record of the batch is
either stored in SQL or acknowledged by the dead-letter topic; the Faust agent
(``agents/sink.py``) lets the batch's offsets go only then. Two kinds of failure
are told apart (:func:`pipeline.sink.store.classify_error`):

- the database is down, unreachable or locked: the whole batch is retried with
  backoff, forever (``cxstream_sink_database_up`` 0); consumption pauses.
- the database refuses some record's data: the batch is split until those
  records are found (:mod:`pipeline.sink.isolate`), every other record is
  stored, and each refused one is dead-lettered with stage ``sink``.

A record that cannot even be decoded is dead-lettered with stage ``decode``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.contract.codec import RecordCodec
from pipeline.core.identity import IdentityLinkRecord
from pipeline.core.records import (
    ContactSummary,
    JourneySignal,
    LateEvent,
    NeedRecord,
    SessionRecord,
    SlaEvent,
)
from pipeline.dlq import DeadLetter, build_dead_letter
from pipeline.errors import ContractError, DecodeError, SinkError, SinkUnavailableError
from pipeline.metrics import Metrics
from pipeline.settings import Settings
from pipeline.sink.isolate import IsolatedWrite, write_isolating
from pipeline.sink.rows import Batch, Record
from pipeline.sink.store import Sink
from pipeline.topics import (
    CONTACTS,
    DLQ,
    IDENTITY_LINKS,
    JOURNEY_SIGNALS,
    LATE_EVENTS,
    NEEDS,
    SESSIONS,
    SLA_EVENTS,
)

log = logging.getLogger(__name__)

#: Output topic suffix -> the output record it carries.
SINK_TOPICS = {
    SESSIONS: SessionRecord.OUTPUT_NAME,
    CONTACTS: ContactSummary.OUTPUT_NAME,
    SLA_EVENTS: SlaEvent.OUTPUT_NAME,
    JOURNEY_SIGNALS: JourneySignal.OUTPUT_NAME,
    LATE_EVENTS: LateEvent.OUTPUT_NAME,
    NEEDS: NeedRecord.OUTPUT_NAME,
    # Issue 16: the identity processors' link periods (the identity_links table).
    IDENTITY_LINKS: IdentityLinkRecord.OUTPUT_NAME,
}
# Short cap: a local database outage should end in seconds, not half a minute.
MAX_BACKOFF_SECONDS = 5.0
FIRST_BACKOFF_SECONDS = 0.5


class SinkMessage(Protocol):
    """What the handler reads of a consumed record (a Faust ``Message`` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> float | None:
        """Record timestamp in seconds (Faust's unit)."""
        ...


class SchemaSink(Sink, Protocol):
    """A :class:`~pipeline.sink.store.Sink` that can create its tables."""

    def create_schema(self) -> None: ...


#: Sends one dead letter to a topic and returns when the broker acknowledged it.
SendDeadLetter = Callable[[str, DeadLetter], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Pending:
    """A dead letter still to send, with the labels it is counted under."""

    stage: str
    reason: str
    letter: DeadLetter


class SinkBatchHandler:
    """Stores a batch of output records, dead-letters those that cannot be stored."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        store: SchemaSink,
        send_dead_letter: SendDeadLetter,
        *,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.send_dead_letter = send_dead_letter
        self.wall_ms = wall_ms
        #: How the handler waits between retries (tests replace it).
        self.sleep = sleep
        kafka = settings.kafka
        self.output_by_topic = {kafka.topic(suffix): name for suffix, name in SINK_TOPICS.items()}
        self.topics = tuple(self.output_by_topic)
        self.dlq_topic = kafka.topic(DLQ)
        self.max_record_bytes = settings.limits.max_record_bytes
        self._codecs = {name: RecordCodec(name) for name in SINK_TOPICS.values()}
        self._schema_ready = False

    async def handle(self, messages: Sequence[SinkMessage]) -> None:
        """Store or dead-letter every record of ``messages``.

        Returns once each record is in SQL or its dead letter is acknowledged, so
        the caller may commit the batch's offsets; until then it retries.
        """
        batch: list[tuple[str, Record]] = []
        sources: list[SinkMessage] = []
        letters: list[_Pending] = []
        for message in messages:
            name = self.output_by_topic[message.topic]
            try:
                if message.value is None:
                    raise DecodeError(f"{name}: the record has no value")
                record = self._codecs[name].decode(message.value)
            except ContractError as exc:
                # Our own output topics: an undecodable record is a bug upstream,
                # kept in the dead-letter topic for whoever fixes it.
                letters.append(self._dead_letter(message, exc, "decode"))
                continue
            batch.append((name, record))
            sources.append(message)
        if batch:
            outcome = await self._write_with_retry(batch)
            letters += [
                self._dead_letter(sources[rejected.index], rejected.error, "sink")
                for rejected in outcome.rejected
            ]
        if letters:
            await self._send_with_retry(letters)

    def _dead_letter(self, message: SinkMessage, error: Exception, stage: str) -> _Pending:
        log.error(
            "dead-lettering the %s record at %s[%s]@%s (%s): %s",
            self.output_by_topic[message.topic],
            message.topic,
            message.partition,
            message.offset,
            stage,
            error,
        )
        # The letter's key is dead_letter_key(topic, partition, offset): a copy
        # sent again after a crash collapses with the first one.
        letter = build_dead_letter(
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            timestamp_ms=None if message.timestamp is None else round(message.timestamp * 1000),
            error=error,
            stage=stage,
            now_ms=self.wall_ms(),
            # An output record near the broker's limit plus headers must not
            # become a dead letter the broker refuses (it would stall the sink).
            max_bytes=self.max_record_bytes,
        )
        return _Pending(stage, type(error).__name__, letter)

    def _write(self, batch: Batch) -> IsolatedWrite:
        """Create the schema on first use, then write: both inside the retry loop,
        so a sink started while the database is down waits instead of exiting."""
        if not self._schema_ready:
            self.store.create_schema()
            self._schema_ready = True
        return write_isolating(self.store, batch)

    async def _write_with_retry(self, batch: Batch) -> IsolatedWrite:
        """Return once every record of ``batch`` is stored or known to be refused;
        until then retry with backoff, forever."""
        backoff = FIRST_BACKOFF_SECONDS
        loop = asyncio.get_running_loop()
        while True:
            started = time.perf_counter()
            error: Exception
            try:
                outcome = await loop.run_in_executor(None, self._write, batch)
            except SinkUnavailableError as exc:
                error, database_up = exc, False
                log.warning("database unreachable, retrying in %.1fs: %s", backoff, exc)
            except SinkError as exc:
                # Neither an outage nor one record (a missing table, a revoked
                # permission): dead-lettering would empty the stream into the
                # DLQ, so wait for an operator instead.
                error, database_up = exc, True
                log.error("database failed a batch, retrying in %.1fs: %s", backoff, exc)
            except Exception as exc:
                # Anything else (a driver or pool error the store did not
                # translate) would crash the agent, and Faust would restart it
                # past this batch. Retrying keeps the batch and shows the error.
                error, database_up = exc, False
                log.exception("unexpected error writing a batch, retrying in %.1fs", backoff)
            else:
                # WriteResult.rows is keyed by SQL table, the label values
                # cxstream_sink_rows_total documents (not the output names).
                self.metrics.sink.batch_written(
                    dict(outcome.result.rows), time.perf_counter() - started
                )
                return outcome
            self.metrics.sink.error(
                type(error).__name__, database_up=database_up, backoff_seconds=backoff
            )
            await self.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _send_with_retry(self, letters: list[_Pending]) -> None:
        """Send every dead letter, in order; a failed send is retried with backoff
        (the keys are deterministic, so a resent letter collapses with its twin)."""
        backoff = FIRST_BACKOFF_SECONDS
        for pending in letters:
            while True:
                try:
                    await self.send_dead_letter(self.dlq_topic, pending.letter)
                except Exception as exc:
                    log.warning(
                        "dead letter to %s not sent, retrying in %.1fs: %r",
                        self.dlq_topic,
                        backoff,
                        exc,
                    )
                    await self.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                backoff = FIRST_BACKOFF_SECONDS
                self.metrics.dead_letter(pending.stage, pending.reason)
                break
