"""The ops wall's windows: today on the local calendar day, the shift, the trend."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.wall_windows import parse_shifts, shift_start, wall_windows


def test_today_starts_at_helsinki_midnight_not_utc_midnight() -> None:
    # 2026-03-02 22:30 UTC is 00:30 on 3 March in Helsinki (UTC+2 in winter).
    windows = wall_windows(datetime(2026, 3, 2, 22, 30, tzinfo=UTC))
    assert windows.today == datetime(2026, 3, 2, 22, 0, tzinfo=UTC)


def test_today_follows_summer_time() -> None:
    # Helsinki is UTC+3 in July: local midnight is 21:00 UTC the day before.
    windows = wall_windows(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    assert windows.today == datetime(2026, 6, 30, 21, 0, tzinfo=UTC)


def test_the_shift_is_the_latest_start_at_or_before_now() -> None:
    shifts = ("07:00", "15:00", "23:00")
    # 16:10 local (14:10 UTC): the 15:00 shift, 13:00 UTC.
    assert shift_start(datetime(2026, 3, 2, 14, 10, tzinfo=UTC), "Europe/Helsinki", shifts) == (
        datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    )
    # exactly 07:00 local: that shift has begun.
    assert shift_start(datetime(2026, 3, 2, 5, 0, tzinfo=UTC), "Europe/Helsinki", shifts) == (
        datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    )


def test_a_night_shift_began_yesterday() -> None:
    # 03:00 local on 3 March: the 23:00 shift of 2 March (21:00 UTC).
    now = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
    assert shift_start(now, "Europe/Helsinki", ("07:00", "15:00", "23:00")) == datetime(
        2026, 3, 2, 21, 0, tzinfo=UTC
    )


def test_recent_last_hour_and_trend_windows() -> None:
    now = datetime(2026, 3, 2, 10, 20, 30, tzinfo=UTC)
    windows = wall_windows(now, trend_hours=8)
    assert windows.recent == datetime(2026, 3, 2, 10, 5, 30, tzinfo=UTC)
    assert windows.last_hour == datetime(2026, 3, 2, 9, 20, 30, tzinfo=UTC)
    assert windows.trend == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 8 hour buckets to 10:00


def test_shift_lists_are_parsed_and_checked() -> None:
    assert parse_shifts(" 06:00, 18:00 ") == ("06:00", "18:00")
    with pytest.raises(ValueError):
        parse_shifts("25:00")
    with pytest.raises(ValueError):
        parse_shifts("")
