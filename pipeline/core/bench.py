"""Throughput of the stream core alone (no broker, no serialization per event)."""

from __future__ import annotations

import time
from typing import Any

from pipeline.contract.event import InteractionEvent
from pipeline.settings import Settings

# Replayed untimed before the measured run: what a worker pays once at start
# (imports, building the holiday calendars) is not throughput.
WARMUP_EVENTS = 2000


def bench_replay(events: list[InteractionEvent], settings: Settings) -> dict[str, Any]:
    """Replay ``events`` in one process, then as configured (``replay.workers``).

    Prints a line per run and returns the configured run's report. When the
    configuration runs the partitions in one process anyway, that is the only run.
    """
    from pipeline.replay import replay_events, replay_processes

    replay_events(events[:WARMUP_EVENTS], settings, workers=1)
    configured = replay_processes(settings, len(events))
    one = _timed_replay(events, settings, processes=1)
    if configured == 1:
        return one
    report = _timed_replay(events, settings, processes=configured)
    print(
        f"replay processes={configured} parallel_speedup="
        f"{report['events_per_s'] / one['events_per_s']:.2f} "
        f"one_process_events_per_s={one['events_per_s']} events_per_s={report['events_per_s']}"
    )
    return report


def _timed_replay(
    events: list[InteractionEvent], settings: Settings, *, processes: int
) -> dict[str, Any]:
    from pipeline.core import core_mode
    from pipeline.replay import replay_events

    started = time.perf_counter()
    result = replay_events(events, settings, workers=processes)
    seconds = time.perf_counter() - started
    rate = len(events) / seconds if seconds > 0 else float("inf")
    report = {
        "events": len(events),
        "processes": processes,
        "seconds": round(seconds, 3),
        "events_per_s": round(rate),
        "records": len(result.records),
        "customers_held_peak": result.customers_held_peak,
        "customers_held_at_end": result.customers_held_at_end,
        "customers_total": result.customers_total,
    }
    # Held customers bound the memory: eviction keeps the peak below the total
    # once the events span more than the longest retention (dedup: 24 h).
    print(
        f"replay core={core_mode()} processes={processes} "
        f"events_per_s={report['events_per_s']} events={len(events)} "
        f"seconds={report['seconds']} records={len(result.records)} "
        f"customers_held_peak={result.customers_held_peak} "
        f"customers_held_at_end={result.customers_held_at_end} "
        f"customers_total={result.customers_total}",
        flush=True,
    )
    return report
