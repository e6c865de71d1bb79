"""Calendars that SLA targets are measured on: ``24x7`` and business calendars.

All instants are int epoch milliseconds (UTC); durations are seconds (float).

A :class:`BusinessCalendar` is open, on each local date of its time zone, from
the weekday's opening time to its closing time, unless the date is in one of
its holiday sets. Open time is *real* time: the open interval of a date runs
from the instant the local wall clock reads the opening time to the instant it
reads the closing time, and a second of it is a second of the customer's wait.

Daylight saving time (Europe/Helsinki switches at 03:00/04:00 local on the last
Sundays of March and October):

* an opening that does not contain the switch (08:00-18:00) is exactly its wall
  length (10 hours) on the switch days too;
* an opening that contains the switch counts the real hours: ``00:00``-``24:00``
  is 23 hours on the spring day and 25 hours on the autumn day;
* an opening or closing wall time that does not exist (in the spring gap) or
  exists twice (in the autumn overlap) is resolved as :mod:`zoneinfo` does with
  ``fold=0``: a gap time is read with the offset before the jump (``03:30``
  becomes 04:30 summer time), a repeated time is its first occurrence.

Holiday sets: ``FI`` is ``holidays.country_holidays("FI")`` plus the two eves on
which Finnish banks close (Midsummer Eve and Christmas Eve, added explicitly so
the calendar stays closed even if the data package ever files them as
non-public); ``TARGET2`` is ``holidays.financial_holidays("XECB")`` (the ECB's
TARGET2 closing days).

Speed: the open intervals are built lazily per local calendar year (one
interval per open local date) with running totals, so ``elapsed`` is two
binary searches and ``add`` one more, whatever the span.
"""

from __future__ import annotations

import math
import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from pipeline.errors import ConfigError
from pipeline.settings import WEEKDAYS, CalendarSpec

ALWAYS_OPEN: Final = "24x7"
BUSINESS: Final = "business"
MS_PER_SECOND: Final = 1000
_MINUTES_PER_DAY: Final = 24 * 60
_HHMM = re.compile(r"^(\d{2}):(\d{2})$")
# add() rounds the duration up to whole milliseconds; products such as
# 0.8 * 7200 carry float noise far below this, which must not add a millisecond.
_ROUNDING_SLACK_MS: Final = 1e-6


# Not @runtime_checkable: mypyc (the compiled core) cannot compile that; nothing
# checks isinstance against it.
class Calendar(Protocol):
    """Open time arithmetic on int epoch milliseconds (UTC)."""

    @property
    def name(self) -> str:
        """The calendar's configured name (``24x7``, ``banking_hours``, ...)."""
        ...

    def add(self, start_ms: int, seconds: float) -> int:
        """The earliest ``t >= start_ms`` with ``seconds`` of open time in ``[start_ms, t]``.

        ``seconds`` is rounded up to whole milliseconds. From closed time the
        count starts at the next opening; a result is never inside closed time
        unless ``seconds`` is 0 (then it is ``start_ms``).
        """
        ...

    def elapsed(self, start_ms: int, end_ms: int) -> float:
        """Open seconds in ``[start_ms, end_ms]``; 0.0 if ``end_ms <= start_ms``."""
        ...

    def is_open(self, at_ms: int) -> bool:
        """Whether the instant lies in open time (openings are ``[open, close)``)."""
        ...


def duration_ms(seconds: float) -> int:
    """``seconds`` rounded up to whole milliseconds (float noise ignored); >= 0."""
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"a duration must be >= 0 seconds, not {seconds!r}")
    return max(0, math.ceil(seconds * MS_PER_SECOND - _ROUNDING_SLACK_MS))


@dataclass(frozen=True, slots=True)
class AlwaysOpen:
    """The ``24x7`` calendar: open time is wall time."""

    name: str = ALWAYS_OPEN

    def add(self, start_ms: int, seconds: float) -> int:
        return start_ms + duration_ms(seconds)

    def elapsed(self, start_ms: int, end_ms: int) -> float:
        return max(0, end_ms - start_ms) / MS_PER_SECOND

    def is_open(self, at_ms: int) -> bool:
        return True


# --- holiday sets ------------------------------------------------------------


def _midsummer_eve(year: int) -> date:
    """The Friday between 19 and 25 June."""
    june_19 = date(year, 6, 19)
    return june_19 + timedelta(days=(4 - june_19.weekday()) % 7)


def _finnish_bank_holidays(year: int) -> set[date]:
    closed = set(holidays.country_holidays("FI", years=year))
    # Banks close on both eves; holidays 0.109 lists them as public, but the
    # calendar must not depend on that classification staying put.
    closed.update({_midsummer_eve(year), date(year, 12, 24)})
    return closed


def _target2_closing_days(year: int) -> set[date]:
    return set(holidays.financial_holidays("XECB", years=year))


HOLIDAY_SETS: Mapping[str, Callable[[int], set[date]]] = {
    "FI": _finnish_bank_holidays,
    "TARGET2": _target2_closing_days,
}


# --- business calendar -------------------------------------------------------


def _parse_hhmm(text: str, where: str) -> int:
    """``"08:30"`` -> 510 minutes after local midnight; ``"24:00"`` -> 1440."""
    match = _HHMM.match(str(text).strip())
    if not match:
        raise ConfigError(f"{where}: {text!r} is not HH:MM")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes != 0):
        raise ConfigError(f"{where}: {text!r} is not a time of day between 00:00 and 24:00")
    return hours * 60 + minutes


@dataclass(slots=True)
class _YearBlock:
    """The open intervals of one local calendar year, with running open totals.

    ``starts[i]``/``ends[i]`` bound opening ``i`` (epoch ms, sorted, disjoint);
    ``before[i]`` is the open ms of the year before opening ``i`` and
    ``through[i]`` the open ms up to its end. ``first_ms``/``end_ms`` bound
    the local year (local midnight of 1 January to that of the next year).
    """

    year: int
    first_ms: int
    end_ms: int
    starts: list[int]
    ends: list[int]
    before: list[int]
    through: list[int]

    @property
    def total(self) -> int:
        return self.through[-1] if self.through else 0

    def open_before(self, at_ms: int) -> int:
        """Open ms of this year in ``[first_ms, at_ms]`` (``at_ms`` inside the year)."""
        i = bisect_right(self.starts, at_ms) - 1
        if i < 0:
            return 0
        return self.before[i] + min(at_ms, self.ends[i]) - self.starts[i]


class BusinessCalendar:
    """Opening hours per weekday in one time zone, closed on holiday sets.

    Raises :class:`ConfigError` for a bad spec (unknown zone, bad ``HH:MM``,
    close not after open, unknown weekday or holiday set, never open).
    """

    def __init__(self, spec: CalendarSpec) -> None:
        self.name = spec.name
        where = f"calendars.{spec.name}"
        try:
            self.zone = ZoneInfo(spec.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ConfigError(f"{where}.timezone: unknown time zone {spec.timezone!r}") from exc
        # Opening minutes per weekday index (0 = Monday); None = closed.
        self._hours: list[tuple[int, int] | None] = [None] * 7
        for day, span in spec.hours.items():
            if day not in WEEKDAYS:
                raise ConfigError(f"{where}.hours: {day!r} is not one of {WEEKDAYS}")
            try:
                opens_text, closes_text = span
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}.hours.{day}: write [open, close]") from exc
            opens = _parse_hhmm(opens_text, f"{where}.hours.{day}")
            closes = _parse_hhmm(closes_text, f"{where}.hours.{day}")
            if closes <= opens:
                raise ConfigError(
                    f"{where}.hours.{day}: closes at {closes_text} before opening at {opens_text}"
                )
            self._hours[WEEKDAYS.index(day)] = (opens, closes)
        if not any(self._hours):
            raise ConfigError(f"{where}: a business calendar needs opening hours on some weekday")
        unknown = [name for name in spec.holidays if name not in HOLIDAY_SETS]
        if unknown:
            raise ConfigError(
                f"{where}.holidays: unknown set(s) {unknown}; known: {sorted(HOLIDAY_SETS)}"
            )
        self.holiday_sets: tuple[str, ...] = tuple(spec.holidays)
        self._blocks: dict[int, _YearBlock] = {}
        self._holidays: dict[int, frozenset[date]] = {}
        self._last: _YearBlock | None = None

    def __repr__(self) -> str:
        return f"BusinessCalendar(name={self.name!r}, zone={self.zone.key!r})"

    # -- public API ------------------------------------------------------

    def add(self, start_ms: int, seconds: float) -> int:
        remaining = duration_ms(seconds)
        if remaining == 0:
            return start_ms
        block = self._block_at(start_ms)
        target = block.open_before(start_ms) + remaining
        while target > block.total:
            remaining = target - block.total
            block = self._block(block.year + 1)
            target = remaining
        i = bisect_left(block.through, target)
        return block.starts[i] + target - block.before[i]

    def elapsed(self, start_ms: int, end_ms: int) -> float:
        if end_ms <= start_ms:
            return 0.0
        first = self._block_at(start_ms)
        if first.first_ms <= end_ms < first.end_ms:
            return (first.open_before(end_ms) - first.open_before(start_ms)) / MS_PER_SECOND
        total = first.total - first.open_before(start_ms)
        block = self._block(first.year + 1)
        while end_ms >= block.end_ms:
            total += block.total
            block = self._block(block.year + 1)
        self._last = block
        return (total + block.open_before(end_ms)) / MS_PER_SECOND

    def is_open(self, at_ms: int) -> bool:
        block = self._block_at(at_ms)
        i = bisect_right(block.starts, at_ms) - 1
        return i >= 0 and at_ms < block.ends[i]

    def is_closed_day(self, day: date) -> bool:
        """Whether the local date has no opening (weekday without hours, or a holiday)."""
        return self._hours[day.weekday()] is None or day in self._holiday_dates(day.year)

    # -- year blocks -----------------------------------------------------

    def _local_ms(self, day: date, minutes: int) -> int:
        """The instant the local wall clock reads ``minutes`` after midnight of ``day``."""
        if minutes == _MINUTES_PER_DAY:
            day, minutes = day + timedelta(days=1), 0
        wall = datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=self.zone)
        return round(wall.timestamp() * MS_PER_SECOND)

    def _holiday_dates(self, year: int) -> frozenset[date]:
        cached = self._holidays.get(year)
        if cached is None:
            closed: set[date] = set()
            for name in self.holiday_sets:
                closed |= HOLIDAY_SETS[name](year)
            cached = self._holidays[year] = frozenset(closed)
        return cached

    def _block(self, year: int) -> _YearBlock:
        block = self._blocks.get(year)
        if block is None:
            block = self._blocks[year] = self._build_block(year)
        return block

    def _build_block(self, year: int) -> _YearBlock:
        starts: list[int] = []
        ends: list[int] = []
        before: list[int] = []
        through: list[int] = []
        running = 0
        closed = self._holiday_dates(year)
        day = date(year, 1, 1)
        while day.year == year:
            hours = self._hours[day.weekday()]
            if hours is not None and day not in closed:
                opens_ms = self._local_ms(day, hours[0])
                closes_ms = self._local_ms(day, hours[1])
                # A gap-resolved opening can collapse; it then holds no open time.
                if closes_ms > opens_ms:
                    if ends and opens_ms <= ends[-1]:
                        # 24:00 of one day meets 00:00 of the next: one opening.
                        running += closes_ms - ends[-1]
                        ends[-1] = closes_ms
                        through[-1] = running
                    else:
                        starts.append(opens_ms)
                        ends.append(closes_ms)
                        before.append(running)
                        running += closes_ms - opens_ms
                        through.append(running)
            day += timedelta(days=1)
        return _YearBlock(
            year=year,
            first_ms=self._local_ms(date(year, 1, 1), 0),
            end_ms=self._local_ms(date(year + 1, 1, 1), 0),
            starts=starts,
            ends=ends,
            before=before,
            through=through,
        )

    def _block_at(self, at_ms: int) -> _YearBlock:
        """The year block whose local year holds ``at_ms``."""
        last = self._last
        if last is not None and last.first_ms <= at_ms < last.end_ms:
            return last
        # The UTC year is the local year, or its neighbour near New Year.
        block = self._block(time.gmtime(at_ms // MS_PER_SECOND).tm_year)
        while at_ms < block.first_ms:
            block = self._block(block.year - 1)
        while at_ms >= block.end_ms:
            block = self._block(block.year + 1)
        self._last = block
        return block


def build_calendar(spec: CalendarSpec) -> Calendar:
    """One calendar from its spec; :class:`ConfigError` if the spec is invalid."""
    if spec.type == ALWAYS_OPEN:
        return AlwaysOpen(name=spec.name)
    if spec.type == BUSINESS:
        return BusinessCalendar(spec)
    raise ConfigError(f"calendars.{spec.name}.type must be {ALWAYS_OPEN} or {BUSINESS}")


def build_calendars(specs: Mapping[str, CalendarSpec]) -> dict[str, Calendar]:
    """Calendar objects by name; :class:`ConfigError` names the first bad spec."""
    return {name: build_calendar(spec) for name, spec in specs.items()}


def holiday_dates(set_name: str, years: Iterable[int]) -> frozenset[date]:
    """The closed dates of one holiday set (``FI`` or ``TARGET2``) in the given years."""
    if set_name not in HOLIDAY_SETS:
        raise ConfigError(f"unknown holiday set {set_name!r}; known: {sorted(HOLIDAY_SETS)}")
    closed: set[date] = set()
    for year in years:
        closed |= HOLIDAY_SETS[set_name](year)
    return frozenset(closed)
