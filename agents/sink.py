"""The sink agent: output topics -> SQL, one transaction per batch.

Offsets are committed only after the batch's transaction committed. Faust acks
the events of a ``take_events`` batch when the loop asks for the next batch, but
also when the loop is left by an exception or a cancellation (the worker
stopping while the database is down), and commits acked offsets on shutdown. So
the loop holds one extra reference on every message of a batch and drops it only
once ``store.write`` succeeded: a batch that was never written is never acked.
While the database is unreachable the loop retries with backoff, so consumption
pauses and nothing is lost; it resumes by itself when the database is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust

from pipeline.contract.codec import RecordCodec
from pipeline.core.records import (
    ContactSummary,
    JourneySignal,
    LateEvent,
    SessionRecord,
    SlaEvent,
)
from pipeline.errors import ContractError, SinkError, SinkUnavailableError
from pipeline.metrics import Metrics
from pipeline.settings import Settings
from pipeline.sink.store import SqlStore
from pipeline.topics import CONTACTS, JOURNEY_SIGNALS, LATE_EVENTS, SESSIONS, SLA_EVENTS

log = logging.getLogger(__name__)

SINK_TOPICS = {
    SESSIONS: SessionRecord.OUTPUT_NAME,
    CONTACTS: ContactSummary.OUTPUT_NAME,
    SLA_EVENTS: SlaEvent.OUTPUT_NAME,
    JOURNEY_SIGNALS: JourneySignal.OUTPUT_NAME,
    LATE_EVENTS: LateEvent.OUTPUT_NAME,
}
# Short cap: a local database outage should end in seconds, not half a minute.
MAX_BACKOFF_SECONDS = 5.0


class SinkRole:
    def __init__(
        self, app: faust.App, settings: Settings, metrics: Metrics, store: SqlStore
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self._schema_ready = False
        kafka = settings.kafka
        self.output_by_topic = {kafka.topic(suffix): name for suffix, name in SINK_TOPICS.items()}
        self.codecs = {name: RecordCodec(name) for name in SINK_TOPICS.values()}
        topics = app.topic(*self.output_by_topic, key_serializer="raw", value_serializer="raw")
        app.agent(topics, name="sink")(self._sink)

    async def _sink(self, stream: faust.StreamT) -> None:
        sql = self.settings.sql
        # take_events is faust-streaming's batching API; StreamT's stub lacks it.
        batches = stream.take_events(sql.batch_size, within=sql.batch_seconds)  # type: ignore[attr-defined]
        async for events in batches:
            for event in events:
                event.message.incref()
            batch = self._decode(events)
            if batch:
                await self._write_with_retry(batch)
            # Written (or nothing to write): take_events' own ack may now be final.
            for event in events:
                event.message.decref()

    def _decode(self, events: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
        batch = []
        for event in events:
            message = event.message
            name = self.output_by_topic[message.topic]
            try:
                batch.append((name, self.codecs[name].decode(message.value)))
            except ContractError as exc:
                # Our own output topics: an undecodable record is a bug upstream,
                # never a reason to stop the sink.
                log.error(
                    "skipping undecodable %s record at offset %s: %s", name, message.offset, exc
                )
                self.metrics.sink_error(type(exc).__name__, database_up=True, backoff_seconds=0.0)
        return batch

    def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> Any:
        """Create the schema on first use, then write: both inside the retry loop,
        so a sink started while the database is down waits instead of exiting."""
        if not self._schema_ready:
            self.store.create_schema()
            self._schema_ready = True
        return self.store.write(batch)

    async def _write_with_retry(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """Return once ``batch`` is stored; until then retry with backoff, forever."""
        backoff = 0.5
        loop = asyncio.get_running_loop()
        while True:
            started = time.perf_counter()
            error: Exception
            try:
                result = await loop.run_in_executor(None, self._write, batch)
            except SinkUnavailableError as exc:
                error, database_up = exc, False
                log.warning("database unreachable, retrying in %.1fs: %s", backoff, exc)
            except SinkError as exc:
                error, database_up = exc, True
                log.error("database rejected a batch, retrying in %.1fs: %s", backoff, exc)
            except Exception as exc:
                # Anything else (a driver or pool error the store did not
                # translate) would crash the agent, and Faust would restart it
                # past this batch. Retrying keeps the batch and shows the error.
                error, database_up = exc, False
                log.exception("unexpected error writing a batch, retrying in %.1fs", backoff)
            else:
                # WriteResult.rows is keyed by SQL table, the label values
                # cxstream_sink_rows_total documents (not the output names).
                self.metrics.sink_batch_written(dict(result.rows), time.perf_counter() - started)
                return
            self.metrics.sink_error(
                type(error).__name__, database_up=database_up, backoff_seconds=backoff
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
