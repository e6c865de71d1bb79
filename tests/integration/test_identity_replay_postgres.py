"""Identity traffic replayed into PostgreSQL through the sink's bulk path (issue 16):
the identity_links rows, pseudonymised identifiers, every contact in one journey."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from pipeline.cli import main
from pipeline.tools.simulator import SimulatorConfig, generate

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_a_replay_of_identity_traffic_fills_identity_links_and_counts_each_contact_once(
    tmp_path: Path, pg_database_url: str
) -> None:
    events = tmp_path / "events.jsonl"
    config = SimulatorConfig(
        customers=80, count=1500, seed=4, malformed_share=0.0, identity_share=0.5
    )
    items = list(generate(config))
    events.write_text("".join(item.to_json_line() + "\n" for item in items))
    numbers = {
        item.event.identifier_value
        for item in items
        if item.event is not None and item.event.identifier_kind == "phone"
    }
    assert numbers

    out = str(tmp_path / "out")
    assert main(["replay", str(events), "--out", out, "--db", pg_database_url]) == 0

    dsn = make_url(pg_database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn) as connection:
        links = connection.execute(
            "SELECT identifier, identifier_kind, customer_id, valid_from, valid_to"
            " FROM identity_links"
        ).fetchall()
        contacts = connection.execute("SELECT count(*) FROM contacts").fetchone()
        in_journeys = connection.execute(
            "SELECT coalesce(sum(contacts), 0) FROM sessions WHERE status <> 'superseded'"
        ).fetchone()
        anonymous = connection.execute(
            "SELECT count(*) FROM contacts WHERE customer_id LIKE 'anon:%'"
        ).fetchone()
    assert len(links) > 10
    assert {kind for _, kind, _, _, _ in links} <= {"phone", "chat_session"}
    assert not any(number in identifier for identifier, *_ in links for number in numbers)
    assert contacts is not None and in_journeys is not None and anonymous is not None
    assert contacts[0] == in_journeys[0] > 0
    assert anonymous[0] > 0
