"""Micro-benchmarks of the calendars and the SLA clocks.

Run ``python -m pipeline.core.calendar_bench``. The stream core calls ``add``,
``elapsed`` and ``ContactSla.observe`` per event, so all must stay far above
the event rate of one worker. On a shared machine take the best of a few runs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from pipeline.contract.event import (
    AGENT,
    AGENT_REPLY,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER,
    CUSTOMER_MESSAGE,
    SYSTEM,
    InteractionEvent,
)
from pipeline.core.calendar import Calendar, build_calendars
from pipeline.core.sla import ContactSla
from pipeline.core.sla_policy import resolve_policies
from pipeline.settings_loader import build_settings

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


def _thread(channel: str, reply_after_ms: int) -> list[InteractionEvent]:
    """A typical contact: started, then three customer messages each answered."""
    steps = [(CONTACT_STARTED, SYSTEM, 0)]
    for i in range(3):
        at = i * 3_600_000 + 1_000
        steps += [(CUSTOMER_MESSAGE, CUSTOMER, at), (AGENT_REPLY, AGENT, at + reply_after_ms)]
    steps.append((CONTACT_ENDED, SYSTEM, 4 * 3_600_000))
    return [
        InteractionEvent(
            event_id=f"e{n}",
            occurred_at=_YEAR_START_MS + 40 * 86_400_000 + offset,
            customer_id="c",
            channel=channel,
            contact_id="k",
            type=kind,
            actor=actor,
        )
        for n, (kind, actor, offset) in enumerate(steps)
    ]


def bench_sla(contacts: int = 5_000, repeats: int = 5) -> dict[str, float]:
    """``ContactSla.observe`` calls per second (opening included), best of ``repeats``.

    One figure per default channel policy: a web-message thread answered within
    the hour and a chat answered within 30 seconds (no breach: the common case).
    """
    settings = build_settings()
    calendars = build_calendars(settings.calendars)
    policies = resolve_policies(settings.policies, calendars)
    results: dict[str, float] = {}
    for channel, reply_after_ms in (("web_message", 1_800_000), ("chat", 30_000)):
        events = _thread(channel, reply_after_ms)
        best = 0.0
        for _ in range(repeats):
            began = time.perf_counter()
            for _ in range(contacts):
                sla = ContactSla.open(
                    customer_id="c",
                    contact_id="k",
                    channel=channel,
                    policies=policies,
                    business_calendar=calendars["banking_hours"],
                )
                for event in events:
                    sla.fire_due(event.occurred_at)
                    sla.observe(event)
            best = max(best, contacts * len(events) / (time.perf_counter() - began))
        results[f"sla.{channel}.observe+fire_due"] = best
    for key, rate in results.items():
        print(f"{key:<32} {rate:>12,.0f} calls/s")
    return results


if __name__ == "__main__":
    bench_calendar()
    bench_sla()
