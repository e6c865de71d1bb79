"""``contacts.identified_at``: when the identifier that gave a contact to its customer
was identified (issue 16).

The identity processor's release carries the start of the link that gives the
event to its customer (the ``identified`` event's ``occurred_at``, the
``identity_links.valid_from`` of that period); the customer's processor keeps it
on the contact, the contact record (schema ``contact`` v6) and the SQL row
(migration 0009) carry it. None for a contact no identity gave (its events came
with the customer id) and for an anonymous customer.
"""

from __future__ import annotations

import dataclasses
import sqlite3

from pipeline.contract.codec import EventCodec, RecordCodec
from pipeline.contract.event import AGENT, AGENT_REPLY, CONTACT_ENDED, CONTACT_STARTED, RESOLVED
from pipeline.contract.schemas import load_versions
from pipeline.core.identity import IdentityProcessor, IdentityRules, Release
from pipeline.core.identity_stage import CustomerEvent, IdentityStage
from pipeline.core.processor import PartitionProcessor
from pipeline.identity_wire import decode_rekeyed, encode_routed
from pipeline.replay import collapse, replay_events
from pipeline.replay_sql import write_records_to_sql
from pipeline.settings_loader import build_settings
from tests.unit.test_identity_continuity import (
    MINUTE,
    SETTINGS,
    T0,
    _wrong_link_then_right_one,
    event,
    link,
)

RULES = IdentityRules.from_settings(SETTINGS.identity)


def _call_identified_after_two_minutes() -> list:
    return [
        event("a1", T0, CONTACT_STARTED),
        link("a2", T0 + 2 * MINUTE, "cust-A"),
        event("a3", T0 + 5 * MINUTE, AGENT_REPLY, actor=AGENT),
        event("a4", T0 + 6 * MINUTE, CONTACT_ENDED, actor=AGENT, outcome=RESOLVED),
        # A later call on the same number, anonymous: the link of the first call holds.
        event("b1", T0 + 20 * MINUTE, CONTACT_STARTED, contact="call-2"),
        # Customer A's own chat, known by customer id only.
        event("c1", T0 + 30 * MINUTE, CONTACT_STARTED, customer="cust-A", channel="chat",
              contact="chat-1", identifier=None),
    ]  # fmt: skip


def test_a_release_carries_the_start_of_the_link_that_gives_the_event_its_customer():
    processor = IdentityProcessor(RULES)
    events = _call_identified_after_two_minutes()
    releases = [out for e in events[:5] for out in processor.process(e)]
    assert [(r.event.event_id, r.identified_at) for r in releases if isinstance(r, Release)] == [
        ("a1", T0 + 2 * MINUTE),
        ("a3", T0 + 2 * MINUTE),
        ("a4", T0 + 2 * MINUTE),
        ("b1", T0 + 2 * MINUTE),
    ]


def test_events_released_as_an_anonymous_customer_carry_no_identification():
    processor = IdentityProcessor(RULES)
    processor.process(event("n1", T0, CONTACT_STARTED, identifier=("phone", "+3585000")))
    [release] = processor.end_of_input(T0)
    assert isinstance(release, Release) and release.identified_at is None


def test_the_replay_s_contacts_carry_when_they_were_identified():
    tables = collapse(replay_events(_call_identified_after_two_minutes(), SETTINGS).records)
    contacts = tables["contact"]
    assert contacts["call-1"]["identified_at"] == T0 + 2 * MINUTE
    assert contacts["call-2"]["identified_at"] == T0 + 2 * MINUTE
    assert contacts["chat-1"]["identified_at"] is None


def test_a_contact_moved_to_the_right_customer_carries_that_link_s_start():
    tables = collapse(replay_events(_wrong_link_then_right_one(), SETTINGS).records)
    call = tables["contact"]["call-1"]
    assert (call["customer_id"], call["identified_at"]) == ("cust-B", T0 + 1 * MINUTE)
    assert tables["contact"]["chat-9"]["identified_at"] is None


def test_the_identification_survives_a_restart_from_the_state():
    stage = IdentityStage(RULES, 1)
    first = PartitionProcessor.from_settings(SETTINGS)
    events = _call_identified_after_two_minutes()
    for item in [r for e in events[:2] for r in stage.process(e)]:
        assert isinstance(item, CustomerEvent)
        first.process_released(item.event, item.identified_at)
    restarted = PartitionProcessor.from_settings(SETTINGS)
    for customer_id, data in first.take_dirty().items():
        assert data is not None
        restarted.load_state(customer_id, data)
    restarted.load_clock(first.clock_ms or 0)
    [ended] = [r for r in stage.process(events[3]) if isinstance(r, CustomerEvent)]
    contacts = [r for r in restarted.process_released(ended.event) if r.OUTPUT_NAME == "contact"]
    assert [c.identified_at for c in contacts] == [T0 + 2 * MINUTE]


def test_a_re_keyed_release_keeps_its_identification_time():
    released = CustomerEvent(
        dataclasses.replace(_call_identified_after_two_minutes()[0], customer_id="cust-A"),
        released=True,
        identified_at=T0 + 2 * MINUTE,
    )
    codec = EventCodec()
    wire = encode_routed(released, codec)
    assert decode_rekeyed(wire.value, wire.headers, codec) == released


def test_the_contact_schema_carries_identified_at_and_reads_older_records_as_none():
    record = [
        r
        for r in replay_events(_call_identified_after_two_minutes()[:4], SETTINGS).records
        if r.OUTPUT_NAME == "contact"
    ][-1]
    codec = RecordCodec("contact")
    assert codec.decode(codec.encode_record(record))["identified_at"] == T0 + 2 * MINUTE
    v5 = RecordCodec("contact", [v for v in load_versions("contact") if v.version <= 5])
    older = v5.encode({k: v for k, v in record.to_dict().items() if k != "identified_at"})
    assert codec.decode(older)["identified_at"] is None


def test_the_contacts_table_has_identified_at(tmp_path):
    url = f"sqlite:///{tmp_path / 'cx.db'}"
    result = replay_events(_call_identified_after_two_minutes(), SETTINGS)
    write_records_to_sql(result.records, build_settings({"sql": {"url": url}}))
    with sqlite3.connect(tmp_path / "cx.db") as db:
        rows = db.execute("SELECT contact_id, identified_at FROM contacts ORDER BY 1").fetchall()
    assert [(c, at is not None) for c, at in rows] == [
        ("call-1", True),
        ("call-2", True),
        ("chat-1", False),
    ]
    assert rows[0][1].startswith("2026-03-02 08:02:00")
