"""The sink agent: output topics -> SQL, one transaction per batch.

Offsets are committed only after the batch's transaction committed: Faust acks
the events of a ``take_events`` batch when the loop asks for the next batch,
and this loop does not ask until ``store.write`` succeeded. While the database
is unreachable the loop retries with backoff, so consumption pauses and nothing
is lost; it resumes by itself when the database is back.
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
MAX_BACKOFF_SECONDS = 30.0


class SinkRole:
    def __init__(
        self, app: faust.App, settings: Settings, metrics: Metrics, store: SqlStore
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.store = store
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
            batch = self._decode(events)
            if batch:
                await self._write_with_retry(batch)

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

    async def _write_with_retry(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        backoff = 0.5
        loop = asyncio.get_running_loop()
        while True:
            started = time.perf_counter()
            try:
                result = await loop.run_in_executor(None, self.store.write, batch)
            except SinkUnavailableError as exc:
                self.metrics.sink_error(
                    type(exc).__name__, database_up=False, backoff_seconds=backoff
                )
                log.warning("database unreachable, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            except SinkError as exc:
                self.metrics.sink_error(
                    type(exc).__name__, database_up=True, backoff_seconds=backoff
                )
                log.error("database rejected a batch, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            self.metrics.sink_batch_written(
                _rows_by_table(result, batch), time.perf_counter() - started
            )
            return


def _rows_by_table(result: Any, batch: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    rows = getattr(result, "rows_by_table", None)
    if rows:
        return dict(rows)
    counts: dict[str, int] = {}
    for name, _ in batch:
        counts[name] = counts.get(name, 0) + 1
    return counts
