"""Runs kept apart: a replay never interleaves its rows with another run's (issue 13, defect 8)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.replay_sql import run_url
from pipeline.tools.simulator import SimulatorConfig, generate


def _events(tmp_path: Path, seed: int = 7) -> Path:
    path = tmp_path / f"events-{seed}.jsonl"
    config = SimulatorConfig(customers=50, count=600, seed=seed, malformed_share=0.0)
    path.write_text("".join(item.to_json_line() + "\n" for item in generate(config)))
    return path


def _replay(tmp_path: Path, events: Path, db: Path, *extra: str) -> int:
    out = tmp_path / "out"
    return main(["replay", str(events), "--out", str(out), "--db", f"sqlite:///{db}", *extra])


def test_a_replay_into_a_database_with_rows_is_refused_in_one_line_naming_the_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "cx.db"
    events = _events(tmp_path)
    assert _replay(tmp_path, events, db) == 0
    capsys.readouterr()
    sessions_before = _count(db, "sessions")

    assert _replay(tmp_path, events, db) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"cxstream: error: sqlite:///{db} already holds cxstream rows in ")
    assert "sessions, " in err[0] and "contacts" in err[0]
    assert err[0].endswith("replay into a new database, or give --run NAME to keep this run apart")
    assert _count(db, "sessions") == sessions_before


def test_a_named_run_goes_to_its_own_file_and_two_runs_compare_in_one_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "cx.db"
    assert _replay(tmp_path, _events(tmp_path, 7), db) == 0
    assert _replay(tmp_path, _events(tmp_path, 8), db, "--run", "tuned") == 0
    out = capsys.readouterr().out
    assert f"replay run=tuned url=sqlite:///{tmp_path / 'cx.run_tuned.db'}" in out

    connection = sqlite3.connect(db)
    connection.execute(f"ATTACH DATABASE '{tmp_path / 'cx.run_tuned.db'}' AS run_tuned")
    rows = connection.execute(
        """SELECT 'main' AS run, COUNT(*) FROM main.sessions
           UNION ALL SELECT 'tuned', COUNT(*) FROM run_tuned.sessions"""
    ).fetchall()
    assert rows == [
        ("main", _count(db, "sessions")),
        ("tuned", _count(tmp_path / "cx.run_tuned.db", "sessions")),
    ]
    assert rows[0][1] > 0 and rows[1][1] > 0
    # The seed-8 ids are only in the run's file.
    assert connection.execute(
        "SELECT COUNT(*) FROM main.contacts WHERE contact_id LIKE 'k-8-%'"
    ).fetchone() == (0,)


def test_a_run_name_already_used_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "cx.db"
    events = _events(tmp_path)
    assert _replay(tmp_path, events, db, "--run", "a") == 0
    capsys.readouterr()
    assert _replay(tmp_path, events, db, "--run", "a") == 2
    err = capsys.readouterr().err
    assert "cxstream: error: run a (sqlite:///" in err
    assert err.strip().endswith("choose a new run name")


def test_run_names_are_checked_and_map_to_a_file_or_a_schema() -> None:
    assert run_url("sqlite:///var/cxstream.db", "b") == "sqlite:///var/cxstream.run_b.db"
    assert run_url("sqlite:///var/cxstream.db", None) == "sqlite:///var/cxstream.db"
    assert (
        run_url("postgresql+psycopg://cx:pw@db:5432/cx", "b")
        == "postgresql+psycopg://cx:pw@db:5432/cx?options=-csearch_path%3Drun_b"
    )
    with pytest.raises(ConfigError, match="lower-case letter"):
        run_url("sqlite:///var/cxstream.db", "Run-1")
    with pytest.raises(ConfigError, match="in-memory"):
        run_url("sqlite://", "b")


def test_run_without_db_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(_events(tmp_path)), "--run", "a", "--out", str(tmp_path / "o")]) == 2
    assert "--run names a run in a database: give --db too" in capsys.readouterr().err


def _count(db: Path, table: str) -> int:
    connection = sqlite3.connect(db)
    try:
        return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        connection.close()
