"""Business calendars on concrete 2026/2027 dates (Europe/Helsinki)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from pipeline.core.calendar import (
    AlwaysOpen,
    BusinessCalendar,
    Calendar,
    build_calendars,
    holiday_dates,
)
from pipeline.errors import ConfigError
from pipeline.settings import CalendarSpec
from pipeline.settings_loader import build_settings

HELSINKI = ZoneInfo("Europe/Helsinki")
HOUR = 3600.0
DAY = 86400.0
WEEKDAYS_8_18 = {day: ("08:00", "18:00") for day in ("mon", "tue", "wed", "thu", "fri")}


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Epoch ms of a Helsinki wall-clock time."""
    wall = datetime(year, month, day, hour, minute, tzinfo=HELSINKI)
    return int(wall.timestamp() * 1000)


def wall(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, HELSINKI).isoformat()


@pytest.fixture(scope="module")
def calendars() -> dict[str, Calendar]:
    return build_calendars(build_settings().calendars)


@pytest.fixture(scope="module")
def banking_hours(calendars: dict[str, Calendar]) -> Calendar:
    return calendars["banking_hours"]


@pytest.fixture(scope="module")
def banking_days(calendars: dict[str, Calendar]) -> Calendar:
    return calendars["banking_days"]


def business(
    hours: dict[str, tuple[str, str]] | None = None,
    holidays: tuple[str, ...] = (),
    timezone: str = "Europe/Helsinki",
) -> BusinessCalendar:
    spec = CalendarSpec(
        name="test",
        type="business",
        timezone=timezone,
        hours=WEEKDAYS_8_18 if hours is None else hours,
        holidays=holidays,
    )
    return BusinessCalendar(spec)


# --- building ----------------------------------------------------------------


def test_default_settings_build_the_three_calendars(calendars: dict[str, Calendar]) -> None:
    assert sorted(calendars) == ["24x7", "banking_days", "banking_hours"]
    assert isinstance(calendars["24x7"], AlwaysOpen)
    assert calendars["banking_hours"].name == "banking_hours"
    assert all(isinstance(cal, AlwaysOpen | BusinessCalendar) for cal in calendars.values())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (CalendarSpec("x", "business", "Europe/Helsinki", {"mon": ("8:00", "18:00")}), "HH:MM"),
        (CalendarSpec("x", "business", "Europe/Helsinki", {"mon": ("08:60", "18:00")}), "00:00"),
        (CalendarSpec("x", "business", "Europe/Helsinki", {"mon": ("08:00", "24:30")}), "00:00"),
        (CalendarSpec("x", "business", "Europe/Helsinki", {"mon": ("18:00", "08:00")}), "before"),
        (CalendarSpec("x", "business", "Europe/Helsinki", {"mon": ("08:00", "08:00")}), "before"),
        (CalendarSpec("x", "business", "Europe/Helsinki", {"monday": ("08:00", "18:00")}), "mon"),
        (CalendarSpec("x", "business", "Europe/Helsinki", {}), "opening hours"),
        (CalendarSpec("x", "business", "Mars/Olympus", {"mon": ("08:00", "18:00")}), "time zone"),
        (
            CalendarSpec("x", "business", "UTC", {"mon": ("08:00", "18:00")}, ("FI", "SE")),
            "unknown set",
        ),
        (CalendarSpec("x", "nine_to_five"), "type"),
    ],
)
def test_a_bad_calendar_spec_raises_config_error(spec: CalendarSpec, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_calendars({"x": spec})


# --- 24x7 --------------------------------------------------------------------


def test_always_open_adds_and_measures_wall_time_exactly() -> None:
    clock = AlwaysOpen()
    start = at(2026, 3, 6, 17)
    assert clock.add(start, 2 * HOUR) == start + 7_200_000
    assert clock.add(start, 0.0015) == start + 2  # rounded up to whole ms
    assert clock.elapsed(start, start + 7_200_123) == 7200.123
    assert clock.elapsed(start, start - 5) == 0.0
    assert clock.is_open(at(2026, 12, 25, 3)) is True


def test_a_duration_with_float_noise_does_not_gain_a_millisecond() -> None:
    start = at(2026, 3, 2, 9)
    assert AlwaysOpen().add(start, 0.8 * 7200) == start + 5_760_000
    assert AlwaysOpen().add(start, 0.1 + 0.2) == start + 300


# --- business hours: nights, weekends ---------------------------------------


def test_friday_17_plus_two_business_hours_is_monday_09(banking_hours: Calendar) -> None:
    assert wall(banking_hours.add(at(2026, 3, 6, 17), 2 * HOUR)) == "2026-03-09T09:00:00+02:00"


def test_business_hours_carry_over_the_night(banking_hours: Calendar) -> None:
    assert wall(banking_hours.add(at(2026, 3, 2, 17), 3 * HOUR)) == "2026-03-03T10:00:00+02:00"


def test_a_saturday_message_starts_counting_monday_08(banking_hours: Calendar) -> None:
    saturday_noon = at(2026, 3, 7, 12)
    assert wall(banking_hours.add(saturday_noon, 1)) == "2026-03-09T08:00:01+02:00"
    assert wall(banking_hours.add(saturday_noon, HOUR)) == "2026-03-09T09:00:00+02:00"


def test_a_deadline_that_fills_the_day_exactly_is_the_closing_time(
    banking_hours: Calendar,
) -> None:
    assert wall(banking_hours.add(at(2026, 3, 6, 16), 2 * HOUR)) == "2026-03-06T18:00:00+02:00"


def test_zero_duration_is_the_start_even_in_closed_time(banking_hours: Calendar) -> None:
    saturday = at(2026, 3, 7, 12)
    assert banking_hours.add(saturday, 0) == saturday


def test_elapsed_over_a_weekend_counts_only_opening_hours(banking_hours: Calendar) -> None:
    assert banking_hours.elapsed(at(2026, 3, 6, 18), at(2026, 3, 9, 8)) == 0.0
    assert banking_hours.elapsed(at(2026, 3, 6, 17), at(2026, 3, 9, 9)) == 2 * HOUR
    assert banking_hours.elapsed(at(2026, 3, 7, 0), at(2026, 3, 8, 23, 59)) == 0.0


def test_elapsed_is_zero_when_the_end_is_not_after_the_start(banking_hours: Calendar) -> None:
    assert banking_hours.elapsed(at(2026, 3, 2, 10), at(2026, 3, 2, 9)) == 0.0
    assert banking_hours.elapsed(at(2026, 3, 2, 10), at(2026, 3, 2, 10)) == 0.0


def test_is_open_treats_an_opening_as_half_open(banking_hours: Calendar) -> None:
    assert banking_hours.is_open(at(2026, 3, 2, 7, 59)) is False
    assert banking_hours.is_open(at(2026, 3, 2, 8)) is True
    assert banking_hours.is_open(at(2026, 3, 2, 17, 59)) is True
    assert banking_hours.is_open(at(2026, 3, 2, 18)) is False
    assert banking_hours.is_open(at(2026, 3, 7, 12)) is False


def test_a_span_across_new_year_skips_new_years_day(banking_hours: Calendar) -> None:
    # Thursday 31 Dec 2026 17:00; Friday 1 Jan 2027 is closed; then a weekend.
    start = at(2026, 12, 31, 17)
    assert wall(banking_hours.add(start, 3 * HOUR)) == "2027-01-04T10:00:00+02:00"
    assert banking_hours.elapsed(start, at(2027, 1, 4, 10)) == 3 * HOUR


# --- holidays ----------------------------------------------------------------


def test_easter_thursday_1730_plus_one_hour_is_tuesday_0830(banking_hours: Calendar) -> None:
    # Good Friday 3 Apr 2026 and Easter Monday 6 Apr 2026 are closed.
    assert wall(banking_hours.add(at(2026, 4, 2, 17, 30), HOUR)) == "2026-04-07T08:30:00+03:00"


def test_may_day_is_closed(banking_hours: Calendar) -> None:
    # Friday 1 May 2026: Thursday 17:00 + 2h runs to Monday 4 May 09:00.
    assert banking_hours.is_open(at(2026, 5, 1, 12)) is False
    assert wall(banking_hours.add(at(2026, 4, 30, 17), 2 * HOUR)) == "2026-05-04T09:00:00+03:00"


def test_christmas_eve_day_and_boxing_day_are_closed(banking_hours: Calendar) -> None:
    # 2026: Wednesday 23rd is open; Thu 24, Fri 25 holidays, Sat 26 weekend.
    assert [banking_hours.is_open(at(2026, 12, day, 12)) for day in (23, 24, 25, 26, 28)] == [
        True,
        False,
        False,
        False,
        True,
    ]
    assert wall(banking_hours.add(at(2026, 12, 23, 17), 2 * HOUR)) == "2026-12-28T09:00:00+02:00"


def test_midsummer_eve_is_closed(banking_hours: Calendar) -> None:
    # Friday 19 June 2026 and Friday 25 June 2027.
    assert banking_hours.is_open(at(2026, 6, 19, 12)) is False
    assert banking_hours.is_open(at(2027, 6, 25, 12)) is False
    assert wall(banking_hours.add(at(2026, 6, 18, 17), 2 * HOUR)) == "2026-06-22T09:00:00+03:00"


def test_the_eves_are_closed_even_without_the_package_listing_them() -> None:
    """FI adds the two eves itself; check against a Finnish-only calendar."""
    calendar = business(holidays=("FI",))
    assert calendar.is_closed_day(date(2027, 12, 24)) is True
    assert calendar.is_closed_day(date(2027, 6, 25)) is True
    assert calendar.is_closed_day(date(2027, 6, 24)) is False


def test_independence_day_on_a_weekday_is_closed(banking_hours: Calendar) -> None:
    # Monday 6 Dec 2027 (in 2026 it falls on a Sunday).
    assert banking_hours.is_open(at(2027, 12, 6, 12)) is False
    assert wall(banking_hours.add(at(2027, 12, 3, 17), 2 * HOUR)) == "2027-12-07T09:00:00+02:00"


def test_epiphany_is_finnish_but_not_a_target2_closing_day() -> None:
    finnish_only = business(holidays=("FI",))
    target2_only = business(holidays=("TARGET2",))
    epiphany = at(2026, 1, 6, 12)  # a Tuesday
    assert finnish_only.is_open(epiphany) is False
    assert target2_only.is_open(epiphany) is True
    ascension = at(2026, 5, 14, 12)
    assert finnish_only.is_open(ascension) is False
    assert target2_only.is_open(ascension) is True


def test_target2_closing_days_are_all_finnish_holidays_in_2026_and_2027() -> None:
    """What the data says: TARGET2 adds no closed day to FI in these years."""
    target2 = holiday_dates("TARGET2", (2026, 2027))
    assert sorted(day for day in target2 if day.year == 2026) == [
        date(2026, 1, 1),
        date(2026, 4, 3),
        date(2026, 4, 6),
        date(2026, 5, 1),
        date(2026, 12, 25),
        date(2026, 12, 26),
    ]
    assert target2 <= holiday_dates("FI", (2026, 2027))


def test_a_target2_day_is_closed_on_a_target2_only_calendar() -> None:
    target2_only = business(holidays=("TARGET2",))
    assert target2_only.is_open(at(2026, 4, 3, 12)) is False  # Good Friday
    assert target2_only.is_open(at(2026, 12, 24, 12)) is True  # Christmas Eve: FI only


# --- banking days ------------------------------------------------------------


def test_two_banking_days_from_friday_15_is_tuesday_15(banking_days: Calendar) -> None:
    assert wall(banking_days.add(at(2026, 3, 6, 15), 2 * DAY)) == "2026-03-10T15:00:00+02:00"
    assert banking_days.elapsed(at(2026, 3, 6, 15), at(2026, 3, 10, 15)) == 2 * DAY


def test_banking_days_joins_midnights_into_one_opening(banking_days: Calendar) -> None:
    assert banking_days.is_open(at(2026, 3, 3, 0)) is True
    assert wall(banking_days.add(at(2026, 3, 2, 23), 2 * HOUR)) == "2026-03-03T01:00:00+02:00"


def test_two_banking_days_over_easter(banking_days: Calendar) -> None:
    # Thursday 2 Apr 2026 15:00: 9 h on Thursday, then closed Fri-Mon, 39 h more.
    assert wall(banking_days.add(at(2026, 4, 2, 15), 2 * DAY)) == "2026-04-08T15:00:00+03:00"


# --- daylight saving time ----------------------------------------------------


def test_a_dst_week_keeps_ten_hour_days(banking_hours: Calendar) -> None:
    # Spring forward on Sunday 29 Mar 2026, fall back on Sunday 25 Oct 2026.
    assert wall(banking_hours.add(at(2026, 3, 27, 17), 2 * HOUR)) == "2026-03-30T09:00:00+03:00"
    assert banking_hours.elapsed(at(2026, 3, 27, 8), at(2026, 3, 31, 8)) == 20 * HOUR
    assert wall(banking_hours.add(at(2026, 10, 23, 17), 2 * HOUR)) == "2026-10-26T09:00:00+02:00"
    assert banking_hours.elapsed(at(2026, 10, 23, 8), at(2026, 10, 27, 8)) == 20 * HOUR


def test_an_all_day_opening_on_the_switch_days_counts_real_hours() -> None:
    """00:00-24:00 is 23 real hours on the spring day and 25 on the autumn day."""
    sundays = business(hours={"sun": ("00:00", "24:00")})
    assert sundays.elapsed(at(2026, 3, 29), at(2026, 3, 30)) == 23 * HOUR
    assert sundays.elapsed(at(2026, 10, 25), at(2026, 10, 26)) == 25 * HOUR
    assert sundays.elapsed(at(2026, 3, 22), at(2026, 3, 23)) == 24 * HOUR
    assert wall(sundays.add(at(2026, 3, 29), 23 * HOUR)) == "2026-03-30T00:00:00+03:00"


def test_an_opening_across_the_switch_counts_real_hours() -> None:
    """02:00-05:00 holds 2 real hours in spring (03:00-04:00 never happens), 4 in autumn."""
    early = business(hours={"sun": ("02:00", "05:00")})
    assert early.elapsed(at(2026, 3, 29), at(2026, 3, 30)) == 2 * HOUR
    assert early.elapsed(at(2026, 10, 25), at(2026, 10, 26)) == 4 * HOUR


def test_an_opening_time_in_the_spring_gap_is_read_with_the_winter_offset() -> None:
    """03:30 does not exist on 29 Mar 2026; fold=0 reads it as 04:30 summer time."""
    gap = business(hours={"sun": ("03:30", "06:00")})
    assert gap.is_open(at(2026, 3, 29, 4, 29)) is False
    assert gap.is_open(at(2026, 3, 29, 4, 30)) is True
    assert gap.elapsed(at(2026, 3, 29), at(2026, 3, 30)) == 1.5 * HOUR


def test_a_calendar_in_another_zone_uses_its_own_wall_clock() -> None:
    utc_hours = business(hours={"mon": ("08:00", "18:00")}, timezone="UTC")
    monday_0800_utc = at(2026, 3, 2, 10)  # 10:00 Helsinki = 08:00 UTC
    assert utc_hours.is_open(monday_0800_utc) is True
    assert utc_hours.is_open(monday_0800_utc - 1) is False
