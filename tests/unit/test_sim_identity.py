"""The simulator's identity traffic (issue 16) and the replay on it."""

from __future__ import annotations

from pipeline.contract.event import IDENTIFIED, UNLINKED, needs_identity
from pipeline.contract.validate import validate
from pipeline.replay import collapse, replay_events
from pipeline.settings_loader import build_settings
from pipeline.tools.simulator import SimulatorConfig, generate

SETTINGS = build_settings()


def _events(identity_share: float) -> list:
    config = SimulatorConfig(count=4000, seed=5, identity_share=identity_share, malformed_share=0.0)
    return [item.event for item in generate(config) if item.event is not None]


def test_identity_traffic_has_anonymous_starts_identifications_and_wrong_links():
    events = _events(0.5)
    anonymous = [e for e in events if e.customer_id == "" and e.identifier_kind is not None]
    assert {e.identifier_kind for e in anonymous} == {"phone", "chat_session"}
    assert sum(e.type == IDENTIFIED for e in events) > 20
    assert sum(e.type == UNLINKED for e in events) >= 1
    for event in events:
        validate(event, SETTINGS.channels, identity_events=True)


def test_traffic_without_the_identity_share_is_unchanged():
    events = _events(0.0)
    assert not any(needs_identity(e) for e in events)
    again = SimulatorConfig(count=4000, seed=5, malformed_share=0.0)
    assert events == [item.event for item in generate(again) if item.event is not None]


def test_the_replay_of_identity_traffic_counts_every_contact_once_for_a_known_customer():
    result = replay_events(_events(0.5), SETTINGS, partitions=3)
    tables = collapse(result.records)
    assert result.identity["links"] > 20
    assert result.identity["unlinks"] >= 1
    assert result.reattribution["reattributions"] >= 1
    contacts = tables["contact"].values()
    anonymous = [c for c in contacts if c["customer_id"].startswith("anon:")]
    assert 0 < len(anonymous) < len(contacts) // 5  # the never-identified ones
    finals = [s for s in tables["session"].values() if s["status"] == "final"]
    # Each contact row is in exactly one counted journey.
    counted = [cid for s in finals for cid in s["contact_ids"]]
    assert len(counted) == len(set(counted))


def test_the_sql_sink_takes_every_record_of_a_replay_of_identity_traffic(tmp_path):
    import sqlite3

    from pipeline.replay_sql import write_records_to_sql

    url = f"sqlite:///{tmp_path / 'cx.db'}"
    result = replay_events(_events(0.5), SETTINGS, partitions=3)
    write_records_to_sql(result.records, build_settings({"sql": {"url": url}}))
    tables = collapse(result.records)
    with sqlite3.connect(tmp_path / "cx.db") as db:
        contacts = db.execute("SELECT count(*) FROM contacts").fetchone()[0]
        in_journeys = db.execute(
            "SELECT coalesce(sum(contacts), 0) FROM sessions WHERE status <> 'superseded'"
        ).fetchone()[0]
    assert contacts == len(tables["contact"])
    assert in_journeys == contacts  # every contact row in exactly one journey


def test_a_replay_of_identity_traffic_in_two_processes_equals_the_one_process_replay():
    events = _events(0.5)
    one = replay_events(events, SETTINGS, partitions=3, workers=1)
    two = replay_events(events, SETTINGS, partitions=3, workers=2)
    assert [r.to_dict() for r in two.records] == [r.to_dict() for r in one.records]
    assert two.reattribution == one.reattribution and two.identity == one.identity
