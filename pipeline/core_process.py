"""The stream core behind a process boundary: requests in, results out.

Why a second process: on one core the worker's time goes to two things of about
the same weight, Faust's own consumer and stream machinery (the whole cost of a
no-op agent) and the stream core's work of decoding, applying and encoding each
record and sending the results (docs/benchmarks.md). Python runs one of them at
a time. With the :class:`~pipeline.streaming.StreamHandler` in a child process
(``agents/core_child.py``) the two overlap: while the child works on batch N,
the worker's event loop takes batch N+1 from Faust (``agents/core_client.py``).

This module is the pure part, without Kafka: :class:`CoreServer` answers the
requests below with a handler, and :class:`RecordedMetrics` keeps the
handler's metrics calls so the worker can repeat them on its registry. The
same server runs in the worker's own process when ``worker.core_process`` is
off.

Frames are a 4-byte big-endian length and a pickle. Both ends are this package
on one machine, started together; pickle is the fastest codec for the tuples,
bytes and dicts that cross (nothing else ever writes to these pipes).

Requests and replies:

* ``("init", settings, producer_config, changelog_topic)`` -> the core mode
  the child runs (``compiled``/``interpreted``); handled by the child itself
* ``("load", partition, items)`` -> ``(restored customers, applied offset, applied crc)``
* ``("drop", partition)``, ``("forget", partition)`` -> None
* ``("batch", records, tick_partitions)`` -> :class:`BatchResult`. ``records`` are
  input-topic records as ``(partition, offset, key, value, timestamp_ms,
  headers)`` tuples (:class:`~pipeline.streaming.RawRecord` without the topic,
  which is the same for all); with ``tick_partitions`` (a list, possibly
  empty) the clocks of those partitions are advanced to the wall clock after
  the records (live mode) and the result carries their gauges.
* a request that raises -> :class:`CoreFailure`, and the child exits: its state
  may be half-changed, so the worker stops and a restart recovers exactly.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.metrics import LatencyCounts, Metrics, output_effect
from pipeline.settings import Settings
from pipeline.streaming import PartitionGauge, RawRecord, StreamHandler

#: Frame header: payload length, unsigned 32-bit big-endian.
FRAME_HEADER = struct.Struct("!I")

#: (topic, partition or None for "by key", key, value, timestamp ms or None,
#: headers): what ``agents/batch_send.py`` sends.
OutgoingTuple = tuple[
    str, int | None, bytes | None, bytes | None, int | None, Sequence[tuple[str, bytes]]
]


@dataclass(slots=True)
class BatchResult:
    """What one batch request produced, ready to send (see ``pipeline/streaming.py``)."""

    outgoing: list[OutgoingTuple]
    #: partition -> {table key -> serialized value, None = delete}. Clock keys last.
    state: dict[int, dict[str, bytes | None]]
    #: The handler's calls on its metrics sink, to repeat on the worker's metrics.
    metrics: list[tuple[str, tuple[Any, ...]]]
    #: Event time -> processed latencies of the applied events, per bucket.
    latencies: LatencyCounts
    #: Input records in the request.
    records: int
    #: partition -> gauges, for a request that ticked (``tick_partitions`` given).
    gauges: dict[int, PartitionGauge] | None = None
    #: True when the child process already sent ``outgoing`` and ``state`` to
    #: Kafka (``outgoing`` is then empty; ``state`` is for the worker's table).
    sent: bool = False
    #: Where a record the broker refuses for good goes as a headers-only dead
    #: letter (``agents/batch_send.py``); None: such a record fails the batch.
    dead_letter_topic: str | None = None


@dataclass(frozen=True, slots=True)
class CoreFailure:
    """The reply to a request that raised in the child."""

    request: str
    traceback: str


@dataclass(slots=True)
class RecordedMetrics:
    """A :class:`~pipeline.streaming.MetricsSink` that keeps its calls for the worker.

    The child has no metrics endpoint; the worker repeats the calls on its own
    registry (:func:`replay_metrics`), so ``/metrics`` counts the same as when
    the handler ran in the worker itself. What crosses is plain data: output
    records as their :func:`~pipeline.metrics.output_effect` (open-session
    updates, most of the outputs, move nothing and are left out), latencies
    counted per histogram bucket.
    """

    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    latencies: LatencyCounts = field(default_factory=LatencyCounts)

    def observe_events(self, counts: Mapping[tuple[str, str], int]) -> None:
        self.calls.append(("observe_events", (dict(counts),)))

    def observe_output(self, record: Any) -> None:
        effect = output_effect(record)
        if effect is not None:
            self.calls.append(("apply_output_effect", (effect,)))

    def dead_letter(self, stage: str, reason: str) -> None:
        self.calls.append(("dead_letter", (stage, reason)))

    def duplicate_event(self, channel: str) -> None:
        self.calls.append(("duplicate_event", (channel,)))

    def rekeyed_event(self) -> None:
        self.calls.append(("rekeyed_event", ()))

    def redelivered_record(self) -> None:
        self.calls.append(("redelivered_record", ()))

    def observe_processing_latency(self, seconds: float) -> None:
        self.latencies.add(seconds)

    def take(self) -> tuple[list[tuple[str, tuple[Any, ...]]], LatencyCounts]:
        calls, latencies = self.calls, self.latencies
        self.calls, self.latencies = [], LatencyCounts()
        return calls, latencies


#: The Metrics methods a recorded call may name.
_METRICS_METHODS = frozenset(
    {
        "observe_events",
        "apply_output_effect",
        "dead_letter",
        "duplicate_event",
        "rekeyed_event",
        "redelivered_record",
    }
)


def replay_metrics(result: BatchResult, metrics: Metrics) -> None:
    """Repeat a result's recorded metrics calls on the worker's ``metrics``, in order."""
    for name, args in result.metrics:
        if name not in _METRICS_METHODS:
            raise ValueError(f"not a recorded metrics call: {name!r}")
        getattr(metrics, name)(*args)
    if result.latencies:
        metrics.add_processing_latencies(result.latencies)


class CoreServer:
    """Answers the requests of the module docstring with a :class:`StreamHandler`.

    Pure request-in, reply-out: the child process feeds it frames, and a worker
    that runs the core in its own process (``worker.core_process: false``) calls
    it directly.
    """

    def __init__(
        self, settings: Settings, *, wall_clock_ms: Callable[[], int] | None = None
    ) -> None:
        self._metrics = RecordedMetrics()
        self.handler = StreamHandler(settings, metrics=self._metrics, wall_clock_ms=wall_clock_ms)

    def serve(self, request: tuple[Any, ...]) -> Any:
        kind = request[0]
        if kind == "batch":
            _, records, tick_partitions = request
            return self._batch(records, tick_partitions)
        if kind == "load":
            _, partition, items = request
            restored = self.handler.load_partition(partition, items)
            return (
                restored,
                self.handler.applied_offsets.get(partition),
                self.handler.applied_crcs.get(partition),
            )
        if kind == "drop":
            self.handler.drop_partition(request[1])
            return None
        if kind == "forget":
            self.handler.forget_position(request[1])
            return None
        raise ValueError(f"unknown request {kind!r}")

    def _batch(
        self, records: Iterable[tuple[Any, ...]], tick_partitions: list[int] | None
    ) -> BatchResult:
        handler = self.handler
        topic = handler.input_topic
        count = 0
        for fields in records:
            handler.handle(RawRecord(topic, *fields))
            count += 1
        if tick_partitions is not None:
            handler.tick(tick_partitions)
        drained = handler.drain()
        calls, latencies = self._metrics.take()
        return BatchResult(
            outgoing=[
                (out.topic, out.partition, out.key, out.value, out.timestamp_ms, out.headers or ())
                for out in drained.outgoing
            ],
            state=drained.state,
            metrics=calls,
            latencies=latencies,
            records=count,
            gauges=handler.gauges(tick_partitions) if tick_partitions is not None else None,
            dead_letter_topic=handler.dlq_topic,
        )


# -- frames ----------------------------------------------------------------------


def encode_frame(message: Any) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message; ``asyncio.IncompleteReadError`` when the other end closed."""
    (length,) = FRAME_HEADER.unpack(await reader.readexactly(FRAME_HEADER.size))
    return pickle.loads(await reader.readexactly(length))
