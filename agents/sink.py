"""The sink agent: output topics -> SQL, one transaction per batch.

The agent only loops; :class:`pipeline.sink.handler.SinkBatchHandler` decides
what happens to each record (stored, retried while the database is down, or
dead-lettered when the database refuses its data or it cannot be decoded).

Offsets are committed only after the batch's transaction committed. Faust acks
the events of a ``take_events`` batch when the loop asks for the next batch, but
also when the loop is left by an exception or a cancellation (the worker
stopping while the database is down), and commits acked offsets on shutdown. So
the loop holds one extra reference on every message of a batch and drops it only
once every record of the batch is stored or its dead letter acknowledged: a
batch that was never written is never acked. While the database is unreachable
the handler retries with backoff, so consumption pauses and nothing is lost; it
resumes by itself when the database is back.
"""

from __future__ import annotations

import faust

from pipeline.dlq import DeadLetter
from pipeline.metrics import Metrics
from pipeline.settings import Settings
from pipeline.sink.handler import SinkBatchHandler
from pipeline.sink.store import SqlStore


class SinkRole:
    def __init__(
        self, app: faust.App, settings: Settings, metrics: Metrics, store: SqlStore
    ) -> None:
        self.app = app
        self.settings = settings
        self.handler = SinkBatchHandler(settings, metrics, store, self._send_dead_letter)
        topics = app.topic(*self.handler.topics, key_serializer="raw", value_serializer="raw")
        app.agent(topics, name="sink")(self._sink)

    async def _sink(self, stream: faust.StreamT) -> None:
        sql = self.settings.sql
        # take_events is faust-streaming's batching API; StreamT's stub lacks it.
        batches = stream.take_events(sql.batch_size, within=sql.batch_seconds)  # type: ignore[attr-defined]
        async for events in batches:
            for event in events:
                event.message.incref()
            # Returns once every record is stored or dead-lettered (retrying until then).
            await self.handler.handle([event.message for event in events])
            # take_events' own ack may now be final.
            for event in events:
                event.message.decref()

    async def _send_dead_letter(self, topic: str, letter: DeadLetter) -> None:
        """Send through the app's own producer and wait for the broker's ack."""
        await self.app.producer.send_and_wait(
            topic,
            letter.key,
            letter.value,
            partition=None,
            timestamp=None if letter.timestamp_ms is None else letter.timestamp_ms / 1000,
            headers=letter.headers,
        )
