"""Properties that hold for every calendar, on any start and duration within 30 days."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.calendar import Calendar, build_calendars
from pipeline.settings import CalendarSpec
from pipeline.settings_loader import build_settings

HELSINKI = ZoneInfo("Europe/Helsinki")
MONTH_MS = 30 * 86_400_000
# 2025-12-01 .. 2028-01-31 Helsinki: covers both DST switches and year ends.
FIRST_MS = int(datetime(2025, 12, 1, tzinfo=HELSINKI).timestamp() * 1000)
LAST_MS = int(datetime(2028, 1, 31, tzinfo=HELSINKI).timestamp() * 1000)

_SPECS = dict(build_settings().calendars)
# Openings that contain the DST switch and do not end at midnight.
_SPECS["odd_hours"] = CalendarSpec(
    name="odd_hours",
    type="business",
    timezone="Europe/Helsinki",
    hours={"sat": ("02:30", "04:15"), "sun": ("00:00", "24:00"), "wed": ("12:00", "12:01")},
    holidays=("FI",),
)
CALENDARS = build_calendars(_SPECS)
NAMES = sorted(CALENDARS)

instants = st.integers(min_value=FIRST_MS, max_value=LAST_MS)
offsets = st.integers(min_value=0, max_value=MONTH_MS)
durations = st.floats(min_value=0, max_value=30 * 86400.0, allow_nan=False)
whole_ms_durations = st.integers(min_value=0, max_value=MONTH_MS).map(lambda ms: ms / 1000)


@pytest.fixture(scope="module", params=NAMES)
def calendar(request: pytest.FixtureRequest) -> Calendar:
    return CALENDARS[request.param]


@given(start=instants, seconds=durations)
@settings(max_examples=300)
def test_elapsed_until_the_deadline_is_the_duration(
    calendar: Calendar, start: int, seconds: float
) -> None:
    deadline = calendar.add(start, seconds)
    assert deadline >= start
    assert abs(calendar.elapsed(start, deadline) - seconds) <= 0.001


@given(start=instants, seconds=whole_ms_durations)
@settings(max_examples=200)
def test_the_deadline_is_the_earliest_instant_with_that_much_open_time(
    calendar: Calendar, start: int, seconds: float
) -> None:
    deadline = calendar.add(start, seconds)
    assert calendar.elapsed(start, deadline) == seconds
    if seconds > 0:
        assert calendar.elapsed(start, deadline - 1) < seconds


@given(start=instants, first=durations, second=durations)
@settings(max_examples=200)
def test_add_is_monotonic_in_the_duration(
    calendar: Calendar, start: int, first: float, second: float
) -> None:
    shorter, longer = sorted((first, second))
    assert calendar.add(start, shorter) <= calendar.add(start, longer)


@given(start=instants, shift=offsets, seconds=durations)
@settings(max_examples=200)
def test_add_is_monotonic_in_the_start(
    calendar: Calendar, start: int, shift: int, seconds: float
) -> None:
    assert calendar.add(start, seconds) <= calendar.add(start + shift, seconds)


@given(a=instants, ab=offsets, bc=offsets)
@settings(max_examples=300)
def test_elapsed_is_additive(calendar: Calendar, a: int, ab: int, bc: int) -> None:
    b, c = a + ab, a + ab + bc
    assert calendar.elapsed(a, b) + calendar.elapsed(b, c) == pytest.approx(
        calendar.elapsed(a, c), abs=1e-6
    )


@given(a=instants, span=st.integers(min_value=-MONTH_MS, max_value=MONTH_MS))
@settings(max_examples=300)
def test_elapsed_never_exceeds_wall_time(calendar: Calendar, a: int, span: int) -> None:
    b = a + span
    assert 0 <= calendar.elapsed(a, b) <= max(0, b - a) / 1000


@given(at=instants)
@settings(max_examples=200)
def test_open_instants_are_those_where_the_clock_moves(calendar: Calendar, at: int) -> None:
    assert calendar.is_open(at) == (calendar.elapsed(at, at + 1) == 0.001)
