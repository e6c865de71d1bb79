"""``cxstream simulate``: send simulator traffic to a JSONL file, stdout or Kafka.

The generation itself is :mod:`pipeline.tools.simulator` (pure); this module adds the
I/O: where items go, how fast (pacing), and progress lines on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from pipeline.contract.event import iso_to_ms
from pipeline.errors import ConfigError, ContractError, DeliveryError
from pipeline.settings import Settings
from pipeline.tools.sim_journeys import period_intensity
from pipeline.tools.simulator import (
    BANK_EVENTS_PER_JOURNEY,
    DUPLICATE,
    LATE,
    MALFORMED,
    OUT_OF_ORDER,
    SimItem,
    SimulatorConfig,
    bank_profile,
    generate,
)

# Roughly how many events a journey produces (measured on SimulatorConfig's own
# script mix; the bank profile's is BANK_EVENTS_PER_JOURNEY); used to turn an
# events/s pace into a journey arrival rate for live runs.
EVENTS_PER_JOURNEY = 6.0
# Live runs aim slightly below the requested pace so event time, not the token
# bucket, sets the tempo and events are never sent long after they "happened".
LIVE_ARRIVAL_HEADROOM = 0.85
# How long (wall seconds) a time-lapse (``--start now --speedup`` > 1) runs fast
# before its event time has caught up with the wall clock; see :class:`TimeLapse`.
DEFAULT_LAPSE_SECONDS = 1800.0
# Step at which the mean arrival intensity of a time-lapse's event-time window is sampled.
_INTENSITY_STEP_MS = 10 * 60 * 1000


@dataclass(frozen=True, slots=True)
class TimeLapse:
    """When each event of a live run may be sent: event time -> wall time.

    The worker dead-letters an event dated more than ``limits.max_future_skew``
    ahead of its wall clock, so a time-lapse cannot run event time ahead of the
    wall clock. Instead its event time *starts in the past* by
    ``(speedup - 1) x lapse``, runs ``speedup`` times faster than the wall clock
    for ``lapse`` wall milliseconds, meets the wall clock exactly then
    (``caught_up_ms``), and follows it at 1x from there on. An event is never
    due before its ``occurred_at``, so no event is sent ahead of the wall clock.
    With ``speedup`` <= 1 event time starts at the wall clock (a plain live run).
    """

    wall_start_ms: int
    speedup: float
    lapse_ms: int

    @property
    def event_start_ms(self) -> int:
        return self.wall_start_ms - round(max(0.0, self.speedup - 1) * self.lapse_ms)

    @property
    def caught_up_ms(self) -> int:
        """Wall time = event time at which the fast part ends."""
        return self.wall_start_ms + (self.lapse_ms if self.speedup > 1 else 0)

    def due_ms(self, occurred_at: int) -> int:
        """The wall time (epoch ms) at which an event of ``occurred_at`` may be sent.

        Rounded up: a whole millisecond that is never before the exact due time.
        """
        if occurred_at >= self.caught_up_ms:
            return occurred_at
        return self.wall_start_ms + math.ceil((occurred_at - self.event_start_ms) / self.speedup)


class Pacer:
    """Token-bucket pacing at ``rate`` items/s that does not drift.

    Item n is due at ``start + n / rate`` (computed from the count, not by adding
    sleeps, so rounding and slow iterations do not accumulate). After a stall the
    bucket holds at most ``burst_seconds`` of catch-up.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst_seconds: float = 1.0,
    ) -> None:
        if rate <= 0:
            raise ConfigError(f"rate must be positive, not {rate}")
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.burst_seconds = burst_seconds
        self.started = clock()
        self.sent = 0

    def wait(self) -> None:
        """Block until the next item may go."""
        due = self.started + self.sent / self.rate
        now = self.clock()
        if now < due:
            self.sleep(due - now)
        elif now - due > self.burst_seconds:
            # Forget the backlog beyond one burst instead of flooding to catch up.
            self.started = now - self.burst_seconds - self.sent / self.rate
        self.sent += 1


class ItemSink(Protocol):
    def send(self, item: SimItem) -> None: ...

    def close(self) -> int:
        """Flush and release; returns the number of items that failed."""
        ...


class JsonLinesSink:
    """Writes each item as one JSON line (malformed text items verbatim)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def send(self, item: SimItem) -> None:
        self.stream.write(item.to_json_line())
        self.stream.write("\n")

    def close(self) -> int:
        self.stream.flush()
        return 0


class KafkaSink:
    """Sends valid events with ``producer.send`` and malformed items as raw bytes."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.failed = 0

    def send(self, item: SimItem) -> None:
        if item.event is None:
            assert item.malformed_bytes is not None
            future = self.producer.send_raw(None, item.malformed_bytes)
        else:
            try:
                future = self.producer.send(item.event)
            except ContractError:
                # A simulator bug, not a delivery failure, but it must not pass silently.
                self.failed += 1
                return
        if hasattr(future, "add_errback"):
            future.add_errback(self._count_failure)

    def _count_failure(self, _exc: BaseException) -> None:
        self.failed += 1

    def close(self) -> int:
        try:
            self.producer.flush()
        except DeliveryError:
            self.failed = max(self.failed, 1)
        finally:
            # close() flushes again; a failure was already counted above.
            with contextlib.suppress(DeliveryError):
                self.producer.close()
        return self.failed


class Progress:
    """Counts what was sent and prints a line to ``stream`` every ``every_s`` seconds."""

    def __init__(
        self,
        stream: TextIO,
        every_s: float,
        clock: Callable[[], float] = time.monotonic,
        errors: Callable[[], int] = lambda: 0,
    ) -> None:
        self.stream = stream
        self.errors = errors
        self.every_s = every_s
        self.clock = clock
        self.started = clock()
        self.last_print = self.started
        self.counts = {"sent": 0, MALFORMED: 0, DUPLICATE: 0, OUT_OF_ORDER: 0, LATE: 0}
        # On a terminal: a rich bar (pipeline.progress) instead of periodic lines.
        self.bar: Any = None

    def count(self, item: SimItem) -> None:
        self.counts["sent"] += 1
        if self.bar is not None:
            self.bar.advance()
            return
        if item.delivery in self.counts:
            self.counts[item.delivery] += 1
        if self.every_s > 0 and self.clock() - self.last_print >= self.every_s:
            self.last_print = self.clock()
            self.print(errors=self.errors())

    def line(self, *, errors: int, final: bool = False) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        c = self.counts
        text = (
            f"simulate{' done' if final else ''} sent={c['sent']} "
            f"rate={c['sent'] / elapsed:.0f}/s malformed={c[MALFORMED]} errors={errors} "
            f"elapsed={elapsed:.1f}s"
        )
        if final:
            text += f" duplicates={c[DUPLICATE]} out_of_order={c[OUT_OF_ORDER]} late={c[LATE]}"
        return text

    def print(self, *, errors: int, final: bool = False) -> None:
        print(self.line(errors=errors, final=final), file=self.stream, flush=True)


def parse_start(start: str | None, *, wall_ms: Callable[[], int]) -> int | None:
    """``None`` (the simulator's fixed default), ``now`` or ISO-8601 with offset -> epoch ms."""
    if start is None:
        return None
    if start.strip().lower() == "now":
        return wall_ms()
    try:
        return iso_to_ms(start)
    except ContractError as exc:
        raise ConfigError(f"--start: {exc}") from exc


def live_arrival_rate(
    rate: float,
    start_ms: int,
    end_ms: int | None = None,
    *,
    events_per_journey: float = EVENTS_PER_JOURNEY,
) -> float:
    """Peak-hour journeys/hour that produce about ``rate`` events/s at ``start_ms``.

    With ``end_ms``, about ``rate`` on average over ``start_ms..end_ms`` (a
    time-lapse crosses evenings and nights, whose intensity is far below the peak).
    """
    if end_ms is None or end_ms <= start_ms:
        intensity = period_intensity(start_ms)
    else:
        samples = range(start_ms, end_ms, _INTENSITY_STEP_MS)
        intensity = sum(period_intensity(at) for at in samples) / len(samples)
    per_hour = rate * 3600 / events_per_journey / intensity
    return per_hour * LIVE_ARRIVAL_HEADROOM


def simulate_command(
    *,
    settings: Settings,
    customers: int,
    count: int | None,
    seed: int,
    start: str | None,
    rate: float | None,
    output: Path | None,
    to_kafka: bool,
    bootstrap: str | None,
    progress_every_s: float = 2.0,
    speedup: float = 1.0,
    lapse_seconds: float = DEFAULT_LAPSE_SECONDS,
    identity_share: float = 0.0,
    producer_factory: Callable[..., Any] | None = None,
    profile: Callable[..., SimulatorConfig] = bank_profile,
    events_per_journey: float = BANK_EVENTS_PER_JOURNEY,
    stderr: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> int:
    """Generate traffic and send it; returns 0, or 1 if any item failed to deliver.

    Items go to ``output`` (JSON Lines) if given, to Kafka if ``to_kafka``, to both
    if both, and to stdout if neither. ``start="now"`` makes event time follow the
    wall clock: ``rate`` then sets the peak-hours pace and no event is sent before
    its ``occurred_at``; with ``speedup`` > 1 event time runs that many times faster
    than the wall clock (a time-lapse: a 30-minute session gap passes in a minute at
    30x) for ``lapse_seconds`` of wall time: it starts that far in the past and has
    caught up with the wall clock when the lapse ends (:class:`TimeLapse`), so no
    event is ever ahead of the wall clock (the worker's ``limits.max_future_skew``).
    A worker reading a time-lapse needs ``worker.clock: stream``: on the live
    clock, events from the past would be late.
    ``producer_factory`` (default ``EventProducer``) is the seam
    tests use to stand in for Kafka. ``profile`` turns the fields given here
    into a :class:`SimulatorConfig`: the bank profile by default
    (:data:`pipeline.tools.simulator.BANK_PROFILE`), ``SimulatorConfig`` itself for
    its small, busy test population; ``events_per_journey`` is the profile's
    figure (``EVENTS_PER_JOURNEY`` for ``SimulatorConfig``).
    """
    err = stderr if stderr is not None else sys.stderr
    start_ms = parse_start(start, wall_ms=wall_ms)
    live = start is not None and start.strip().lower() == "now"
    fields: dict[str, Any] = {"customers": customers, "count": count, "seed": seed}
    if start_ms is not None:
        fields["start_ms"] = start_ms
    if identity_share:
        # Issue 16: anonymous starts (pipeline/tools/sim_identity.py), processed by
        # the worker's identity processors and by the replay.
        fields["identity_share"] = identity_share
    if speedup <= 0:
        raise ConfigError(f"speedup must be positive, not {speedup}")
    if lapse_seconds < 0:
        raise ConfigError(f"lapse must be zero or more seconds, not {lapse_seconds}")
    lapse: TimeLapse | None = None
    if live and start_ms is not None:
        lapse = TimeLapse(start_ms, speedup, round(lapse_seconds * 1000))
        fields["start_ms"] = lapse.event_start_ms
        if rate:
            # ``rate`` is per wall second; the generator thinks in event-time seconds.
            fields["arrival_rate_per_hour"] = live_arrival_rate(
                rate / speedup,
                lapse.event_start_ms,
                lapse.caught_up_ms,
                events_per_journey=events_per_journey,
            )
    config = profile(**fields)

    sinks: list[ItemSink] = []
    bar: Any = None
    opened: list[TextIO] = []
    try:
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            handle: TextIO = output.open("w", encoding="utf-8")
            opened.append(handle)
            sinks.append(JsonLinesSink(handle))
        if to_kafka:
            sinks.append(KafkaSink(_make_producer(settings, bootstrap, producer_factory)))
        if not sinks:
            sinks.append(JsonLinesSink(sys.stdout))
        pacer = Pacer(rate, clock=clock, sleep=sleep) if rate else None
        kafka_sinks = [sink for sink in sinks if isinstance(sink, KafkaSink)]
        progress = Progress(
            err, progress_every_s, clock, errors=lambda: sum(k.failed for k in kafka_sinks)
        )
        if progress_every_s > 0 and err.isatty():
            from pipeline.progress import Progress as Bar

            bar = progress.bar = Bar("simulate", count, stream=err, terminal=True)
        interrupted = _run(
            generate(config),
            sinks,
            pacer,
            progress,
            lapse=lapse,
            wall_ms=wall_ms,
            sleep=sleep,
        )
    finally:
        if bar is not None:
            bar.close()
        errors = sum(sink.close() for sink in sinks)
        for handle in opened:
            handle.close()
    progress.print(errors=errors, final=True)
    if interrupted:
        return 130
    return 1 if errors else 0


def _make_producer(
    settings: Settings, bootstrap: str | None, factory: Callable[..., Any] | None
) -> Any:
    if factory is None:
        from pipeline.producer import EventProducer

        factory = EventProducer
    topic = settings.kafka.topic("interactions")
    kafka = (
        dataclasses.replace(settings.kafka, bootstrap=bootstrap) if bootstrap else settings.kafka
    )
    return factory(kafka, topic, settings.channels)


def _run(
    items: Iterable[SimItem],
    sinks: list[ItemSink],
    pacer: Pacer | None,
    progress: Progress,
    *,
    lapse: TimeLapse | None,
    wall_ms: Callable[[], int],
    sleep: Callable[[float], None],
) -> bool:
    """Send every item to every sink; returns True if interrupted by Ctrl-C.

    With ``lapse`` (a live run) each event is held until its due wall time.
    """
    try:
        for item in items:
            if pacer is not None:
                pacer.wait()
            if lapse is not None and item.event is not None:
                due_ms = lapse.due_ms(item.event.occurred_at)
                # Loop: a sleep may return a little early.
                while (ahead_ms := due_ms - wall_ms()) > 0:
                    sleep(ahead_ms / 1000)
            for sink in sinks:
                sink.send(item)
            progress.count(item)
    except KeyboardInterrupt:
        return True
    return False
