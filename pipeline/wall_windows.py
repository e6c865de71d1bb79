"""The time windows of the ops wall: last 15 minutes, today, this shift, last hour.

Pure functions of "now" (an aware UTC datetime), so the unit tests pin every edge.
"Today" and "this shift" are local: a supervisor's day starts at local midnight of
the calendar's time zone (Europe/Helsinki), not at UTC midnight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Europe/Helsinki"
DEFAULT_SHIFTS: tuple[str, ...] = ("07:00", "15:00", "23:00")
RECENT_MINUTES = 15
TREND_HOURS = 8


@dataclass(frozen=True, slots=True)
class WallWindows:
    """Start of each window (aware UTC); every window ends at ``now``."""

    now: datetime
    recent: datetime  # the last 15 minutes
    today: datetime  # local midnight
    shift: datetime  # the latest shift start at or before now
    last_hour: datetime
    trend: datetime  # start of the oldest UTC hour bucket of the trend


def parse_shifts(text: str) -> tuple[str, ...]:
    """``"07:00,15:00"`` -> ``("07:00", "15:00")``; a malformed time raises ValueError."""
    shifts = tuple(part.strip() for part in text.split(",") if part.strip())
    if not shifts:
        raise ValueError("no shift start given")
    for shift in shifts:
        time.fromisoformat(shift)  # raises ValueError on e.g. "25:00"
    return shifts


def local_day_start(now: datetime, timezone: str) -> datetime:
    """Local midnight of ``now``'s day in ``timezone``, as UTC."""
    local = now.astimezone(ZoneInfo(timezone))
    midnight = datetime.combine(local.date(), time(0), tzinfo=ZoneInfo(timezone))
    return midnight.astimezone(UTC)


def shift_start(now: datetime, timezone: str, shifts: Sequence[str]) -> datetime:
    """The latest local shift start at or before ``now``, as UTC.

    Before the day's first shift start, that is yesterday's last one (a night shift
    that began at 23:00 is still running at 03:00).
    """
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    starts = sorted(time.fromisoformat(text) for text in shifts)
    candidates = [
        datetime.combine(local.date() + timedelta(days=offset), start, tzinfo=zone)
        for offset in (-1, 0)
        for start in starts
    ]
    return max(c for c in candidates if c <= local).astimezone(UTC)


def wall_windows(
    now: datetime,
    timezone: str = DEFAULT_TIMEZONE,
    shifts: Sequence[str] = DEFAULT_SHIFTS,
    trend_hours: int = TREND_HOURS,
) -> WallWindows:
    """Every window of the wall for ``now`` (aware)."""
    now = now.astimezone(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    return WallWindows(
        now=now,
        recent=now - timedelta(minutes=RECENT_MINUTES),
        today=local_day_start(now, timezone),
        shift=shift_start(now, timezone, shifts),
        last_hour=now - timedelta(hours=1),
        trend=hour - timedelta(hours=trend_hours - 1),
    )
