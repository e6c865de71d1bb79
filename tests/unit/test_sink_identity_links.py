"""The identity_links table and the pseudonymised identifiers in SQL (issue 16)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline.replay import replay_events
from pipeline.replay_sql import write_to_sql
from pipeline.settings_loader import build_settings
from tests.unit.test_identity_continuity import (
    HOUR,
    MINUTE,
    PHONE,
    SETTINGS,
    T0,
    UNLINKED,
    _wrong_link_then_right_one,
    link,
)


def _write(tmp_path: Path, events, **sql) -> sqlite3.Connection:
    url = f"sqlite:///{tmp_path / 'cx.db'}"
    settings = build_settings({"sql": {"url": url, **sql}})
    write_to_sql(replay_events(events, SETTINGS, partitions=2), settings)
    return sqlite3.connect(tmp_path / "cx.db")


def test_a_replay_writes_each_link_period_of_an_identifier(tmp_path):
    events = [
        link("r1", T0, "cust-A"),
        link("r4", T0 + 3 * HOUR, "cust-B"),
        link("r5", T0 + 3 * HOUR + MINUTE, "cust-B", UNLINKED),
    ]
    with _write(tmp_path, events) as db:
        rows = db.execute(
            "SELECT identifier_kind, customer_id, valid_from, valid_to FROM identity_links"
            " ORDER BY valid_from"
        ).fetchall()
        identifiers = {r[0] for r in db.execute("SELECT identifier FROM identity_links")}
    assert [(kind, customer, valid_to is None) for kind, customer, _, valid_to in rows] == [
        ("phone", "cust-A", False),
        ("phone", None, True),  # B's link was undone: no customer from then on
    ]
    assert len(identifiers) == 1 and PHONE not in identifiers.pop()


def test_with_pseudonymisation_neither_the_identifier_nor_the_customer_is_stored(tmp_path):
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    with _write(
        tmp_path, _wrong_link_then_right_one(), pseudonymise=True, pseudonym_key_file=str(key)
    ) as db:
        links = db.execute("SELECT identifier, customer_id FROM identity_links").fetchall()
        dump = "\n".join(
            str(row)
            for table in ("identity_links", "contacts", "sessions", "late_events", "sla_events")
            for row in db.execute(f"SELECT * FROM {table}")
        )
    [(identifier, customer)] = links
    assert identifier.startswith("p-") and customer.startswith("p-")
    assert PHONE not in dump and "cust-B" not in dump


def test_a_late_event_keeps_its_identifier_only_as_a_pseudonym():
    from pipeline.sink.pseudonym import Pseudonymizer
    from pipeline.sink.rows import rows_by_table

    record = {
        "event_id": "e1",
        "customer_id": "cust-A",
        "occurred_at": T0,
        "clock_at": T0 + HOUR,
        "reason": "late",
        "event": {"customer_id": "cust-A", "identifier": {"kind": "phone", "value": PHONE}},
    }
    [row] = rows_by_table([("late_event", record)], Pseudonymizer(b"k" * 32))[
        "late_events"
    ].values()
    assert row["event_json"]["identifier"]["kind"] == "phone"
    assert row["event_json"]["identifier"]["value"].startswith("p-")
    assert PHONE not in str(row) and "cust-A" not in str(row)
