"""Runs kept apart in PostgreSQL: a run is a schema, two runs compare in one query
(issue 13, defect 8)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from pipeline.cli import main
from pipeline.tools.simulator import SimulatorConfig, generate

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _events(tmp_path: Path, seed: int) -> Path:
    path = tmp_path / f"events-{seed}.jsonl"
    config = SimulatorConfig(customers=50, count=800, seed=seed, malformed_share=0.0)
    path.write_text("".join(item.to_json_line() + "\n" for item in generate(config)))
    return path


def test_a_named_run_is_a_schema_beside_the_live_tables_and_compares_in_one_query(
    tmp_path: Path, pg_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def replay(seed: int, *extra: str) -> int:
        out = str(tmp_path / f"out-{seed}")
        command = ["replay", str(_events(tmp_path, seed)), "--out", out, "--db", pg_database_url]
        return main([*command, *extra])

    assert replay(7) == 0
    capsys.readouterr()
    assert replay(7) == 2
    refusal = capsys.readouterr().err.strip()
    named = refusal.split(" already holds cxstream rows in ")[1].split(";")[0].split(", ")
    assert {"sessions", "contacts", "sla_events", "channel_stats"} <= set(named)
    assert "give --run NAME" in refusal
    assert replay(8, "--run", "tuned") == 0
    assert replay(9, "--run", "baseline") == 0

    dsn = make_url(pg_database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn) as connection:
        # docs/sql.md "Runs": breach rate per run, one query.
        rows = connection.execute(
            """
            SELECT run, COUNT(*) AS journeys,
                   ROUND(100.0 * SUM(CASE WHEN sla_breaches > 0 THEN 1 ELSE 0 END)
                         / COUNT(*), 1) AS breach_percent
              FROM (SELECT 'tuned' AS run, sla_breaches FROM run_tuned.sessions
                     WHERE status = 'final'
                    UNION ALL
                    SELECT 'baseline', sla_breaches FROM run_baseline.sessions
                     WHERE status = 'final') AS runs
             GROUP BY run ORDER BY run
            """
        ).fetchall()
        live_seed_8 = connection.execute(
            "SELECT COUNT(*) FROM public.contacts WHERE contact_id LIKE 'k-8-%'"
        ).fetchone()
        tuned_seed_8 = connection.execute(
            "SELECT COUNT(*) FROM run_tuned.contacts WHERE contact_id LIKE 'k-8-%'"
        ).fetchone()
    assert [run for run, _, _ in rows] == ["baseline", "tuned"]
    assert all(journeys > 0 for _, journeys, _ in rows)
    assert live_seed_8 == (0,)
    assert tuned_seed_8 is not None and tuned_seed_8[0] > 0
