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
    """Replay ``events`` across the configured partitions; prints and returns events/s."""
    from pipeline.core import core_mode
    from pipeline.replay import replay_events

    replay_events(events[:WARMUP_EVENTS], settings)
    started = time.perf_counter()
    result = replay_events(events, settings)
    seconds = time.perf_counter() - started
    rate = len(events) / seconds if seconds > 0 else float("inf")
    report = {
        "events": len(events),
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
        f"replay core={core_mode()} events_per_s={report['events_per_s']} events={len(events)} "
        f"seconds={report['seconds']} records={len(result.records)} "
        f"customers_held_peak={result.customers_held_peak} "
        f"customers_held_at_end={result.customers_held_at_end} "
        f"customers_total={result.customers_total}"
    )
    return report
