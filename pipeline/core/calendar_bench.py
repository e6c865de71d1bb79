"""Micro-benchmark of the calendars: ``python -m pipeline.core.calendar_bench``.

The stream core calls ``add`` and ``elapsed`` per event, so both must stay far
above the event rate of one worker.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from pipeline.core.calendar import Calendar, build_calendars
from pipeline.settings import build_settings

_WEEK_MS = 7 * 86_400_000
# 2026-01-01T00:00Z; the spans below cover all of 2026 (holidays and DST switches).
_YEAR_START_MS = 1_767_225_600_000
_YEAR_MS = 365 * 86_400_000


def _rate(call: Callable[[int, int], object], pairs: list[tuple[int, int]]) -> float:
    began = time.perf_counter()
    for first, second in pairs:
        call(first, second)
    return len(pairs) / (time.perf_counter() - began)


def bench_calendar(calls: int = 200_000, seed: int = 7) -> dict[str, float]:
    """Calls per second of ``add`` and ``elapsed`` (spans within a week) per calendar.

    Prints one line per figure and returns them keyed ``<calendar>.<method>``.
    Year blocks are warmed first: the figures are the steady state.
    """
    calendars: dict[str, Calendar] = build_calendars(build_settings().calendars)
    rng = random.Random(seed)
    starts = [_YEAR_START_MS + rng.randrange(_YEAR_MS) for _ in range(calls)]
    spans = [(start, start + rng.randrange(_WEEK_MS)) for start in starts]
    durations = [(start, rng.randrange(1, 2 * 86_400)) for start in starts]
    results: dict[str, float] = {}
    for name, calendar in sorted(calendars.items()):
        calendar.elapsed(_YEAR_START_MS - _WEEK_MS, _YEAR_START_MS + _YEAR_MS + _WEEK_MS)
        results[f"{name}.elapsed"] = _rate(calendar.elapsed, spans)
        results[f"{name}.add"] = _rate(calendar.add, durations)
    for key, rate in results.items():
        print(f"{key:<24} {rate:>12,.0f} calls/s")
    return results


if __name__ == "__main__":
    bench_calendar()
