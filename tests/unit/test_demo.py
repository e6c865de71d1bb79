"""The demo's command lines, its fresh database and its live status line (issues 13 and 17)."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.cli import DEMO_CUSTOMERS_DEFAULT, SIMULATE_CUSTOMERS_DEFAULT, build_parser
from pipeline.tools.demo import (
    DEFAULT_CUSTOMERS,
    STATUS_WIDTH,
    fresh_database,
    process_commands,
    short_number,
    status_line,
)
from pipeline.tools.simulator import BANK_PROFILE

NOW = datetime(2026, 12, 5, 13, 0, tzinfo=UTC)


def _commands(config: Path | None) -> dict[str, list[str]]:
    return process_commands(
        config=config,
        bootstrap="127.0.0.1:9999",
        prefix="cx",
        sql_url="sqlite:///var/cxstream.db",
        web_port=6066,
        sink_port=6067,
        rate=40.0,
        customers=DEFAULT_CUSTOMERS,
        seed=7,
        speedup=30.0,
        lapse_seconds=1800.0,
    )


@pytest.mark.parametrize("argv", [["--config", "my.yaml", "demo"], ["demo", "--config", "my.yaml"]])
def test_the_demo_passes_its_config_file_to_every_process_it_starts(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    commands = _commands(args.config)
    expected = ["--config", str(Path("my.yaml").resolve())]
    assert sorted(commands) == ["simulator", "sink", "worker"]
    for name, command in commands.items():
        assert command[1:3] == expected, name
    # Each command line parses as the subcommand it names, with the config on it.
    for command in commands.values():
        assert build_parser().parse_args(command).config == Path(expected[1])


def test_without_a_config_file_the_demo_passes_none() -> None:
    for command in _commands(None).values():
        assert "--config" not in command
        assert command[1:5] == ["--bootstrap", "127.0.0.1:9999", "--prefix", "cx"]


def test_the_demo_moves_an_earlier_sqlite_file_aside_and_says_where(tmp_path: Path) -> None:
    db = tmp_path / "cxstream.db"
    sqlite3.connect(db).execute("CREATE TABLE sessions (x)").connection.commit()
    (tmp_path / "cxstream.db-wal").write_bytes(b"")
    stamp = datetime(2026, 12, 4, 9, 30, 15, tzinfo=UTC).timestamp()
    os.utime(db, (stamp, stamp))

    message = fresh_database(f"sqlite:///{db}", reuse=False, now=NOW)

    aside = tmp_path / "cxstream-20261204-093015.db"
    assert not db.exists()
    assert aside.exists() and (tmp_path / "cxstream-20261204-093015.db-wal").exists()
    assert message == (
        f"sqlite:///{db} (new; the earlier run's file is now {aside}; --reuse-db keeps it)"
    )


def test_the_demo_reuses_the_database_only_when_asked_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "cxstream.db"
    db.write_bytes(b"")
    message = fresh_database(f"sqlite:///{db}", reuse=True, now=NOW)
    assert db.exists()
    assert message == f"reusing sqlite:///{db} (--reuse-db): rows of earlier runs stay in it"
    assert fresh_database(f"sqlite:///{tmp_path / 'new.db'}", reuse=False, now=NOW).endswith(
        "(new)"
    )


def test_the_live_status_line_fits_an_80_column_terminal_whatever_the_figures() -> None:
    huge = {name: 987_654_321_012.0 for name in _metric_names()}
    line = status_line(huge, huge, prefix="13:02:54")
    assert len(line) <= STATUS_WIDTH < 80
    assert line.startswith("13:02:54 events=988G open=988G closed=988G breaches=988G")


def test_the_live_status_line_shows_every_figure_of_a_typical_demo() -> None:
    worker = {
        "cxstream_events_consumed_total": 123_456,
        "cxstream_open_sessions": 812,
        "cxstream_sessions_closed_total": 20_431,
        "cxstream_sla_breaches_total": 342,
        "cxstream_sla_warnings_total": 1_210,
        "cxstream_channel_switch_failures_total": 455,
        "cxstream_consumer_lag": 12,
        "cxstream_dead_letters_total": 1_234,
        "cxstream_late_events_total": 610,
    }
    line = status_line(worker, {"cxstream_sink_rows_total": 2_345_678}, prefix="13:02:54")
    assert (
        line
        == (
            "13:02:54 events=123k open=812 closed=20.4k breaches=342 warnings=1.21k "
            "switch_fail=455 lag=12"
        )[: len(line)]
    )
    assert len(line) <= STATUS_WIDTH


def test_numbers_are_shortened_to_five_characters() -> None:
    assert [short_number(n) for n in (0, 999, 1_000, 12_345, 999_499, 999_500, 1_234_567)] == [
        "0",
        "999",
        "1k",
        "12.3k",
        "999k",
        "1M",
        "1.23M",
    ]


def test_the_command_line_customer_defaults_are_the_profiles() -> None:
    assert BANK_PROFILE["customers"] == SIMULATE_CUSTOMERS_DEFAULT
    assert DEMO_CUSTOMERS_DEFAULT == DEFAULT_CUSTOMERS
    assert build_parser().parse_args(["simulate"]).customers == BANK_PROFILE["customers"]


def _metric_names() -> list[str]:
    from pipeline.tools.demo import STATUS_FIELDS

    return [metric for _, _, metric in STATUS_FIELDS]
