"""Identity continuity end to end in the replay (issue 16, "Done when"): the identity
stage routes events, the customers' processors apply them, and an unlink rebuilds
the customer that loses events and corrects its rows."""

from __future__ import annotations

import dataclasses

from pipeline.contract.event import (
    AGENT,
    AGENT_REPLY,
    BOT,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER,
    CUSTOMER_MESSAGE,
    IDENTIFIED,
    NO_CUSTOMER,
    RESOLVED,
    SYSTEM,
    UNLINKED,
    UNRESOLVED,
    InteractionEvent,
)
from pipeline.contract.validate import validate
from pipeline.core.identity import IdentityRules
from pipeline.core.identity_stage import CustomerEvent, IdentityStage, Unattribution
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import SESSION_FINAL, SESSION_SUPERSEDED, SLA_BREACH
from pipeline.replay import collapse, replay_events
from pipeline.settings_loader import build_settings

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
SETTINGS = build_settings()
PHONE = "+358401234567"


def event(
    event_id: str,
    at: int,
    type_: str,
    *,
    customer: str = NO_CUSTOMER,
    channel: str = "phone",
    contact: str = "call-1",
    actor: str = CUSTOMER,
    identifier: tuple[str, str] | None = ("phone", PHONE),
    **fields,
) -> InteractionEvent:
    kind, value = identifier if identifier is not None else (None, None)
    built = InteractionEvent(
        event_id=event_id,
        occurred_at=at,
        customer_id=customer,
        channel=channel,
        contact_id=contact,
        type=type_,
        actor=actor,
        identifier_kind=kind,
        identifier_value=value,
        **fields,
    )
    return validate(built, SETTINGS.channels, identity_events=True)


def link(event_id: str, at: int, customer: str, type_: str = IDENTIFIED, **fields):
    return event(event_id, at, type_, customer=customer, actor=SYSTEM, **fields)


def finals(tables) -> list[dict]:
    return [s for s in tables["session"].values() if s["status"] == SESSION_FINAL]


def counted_breaches(tables) -> list[dict]:
    return [e for e in tables["sla_event"].values() if e["kind"] == SLA_BREACH]


def test_an_anonymous_call_identified_on_the_call_is_one_journey_with_the_sla_clock_at_its_start():
    events = [
        event("a1", T0, CONTACT_STARTED),
        link("a2", T0 + 2 * MINUTE, "cust-A"),
        event("a3", T0 + 5 * MINUTE, AGENT_REPLY, actor=AGENT),
        event("a4", T0 + 6 * MINUTE, CONTACT_ENDED, actor=AGENT, outcome=RESOLVED),
    ]
    result = replay_events(events, SETTINGS, partitions=2)
    tables = collapse(result.records)

    [journey] = finals(tables)
    assert journey["customer_id"] == "cust-A"
    assert journey["started_at"] == T0
    assert journey["contact_ids"] == ["call-1"]
    assert tables["contact"]["call-1"]["customer_id"] == "cust-A"
    [breach] = counted_breaches(tables)  # 3 minutes to answer, answered after 5
    assert breach["clock_started_at"] == T0
    assert breach["customer_id"] == "cust-A"
    # It carries the link it came through, which orders two customers' records.
    assert breach["identified_at"] == T0 + 2 * MINUTE
    assert result.identity["links"] == 1
    assert not any(r.customer_id.startswith("anon:") for r in result.records)


def test_a_chat_identified_after_its_bot_exchange_keeps_the_exchange_and_finds_the_switch_failure():
    chat = {"channel": "chat", "contact": "chat-1", "identifier": ("chat_session", "s-77")}
    events = [
        event("c1", T0, CONTACT_STARTED, **chat),
        event("c2", T0 + 10 * SECOND, CUSTOMER_MESSAGE, **chat),
        event("c3", T0 + 20 * SECOND, AGENT_REPLY, actor=BOT, **chat),
        link("c4", T0 + 3 * MINUTE, "cust-B", **chat),
        event("c5", T0 + 4 * MINUTE, CONTACT_ENDED, outcome=UNRESOLVED, **chat),
        # The customer gives up on the chat and calls, known by customer id.
        event("p1", T0 + 10 * MINUTE, CONTACT_STARTED, customer="cust-B", contact="call-2",
              identifier=None),
        event("p2", T0 + 11 * MINUTE, CONTACT_ENDED, customer="cust-B", contact="call-2",
              identifier=None, actor=AGENT, outcome=RESOLVED),
    ]  # fmt: skip
    tables = collapse(replay_events(events, SETTINGS, partitions=2).records)

    [journey] = finals(tables)
    assert journey["customer_id"] == "cust-B"
    assert journey["contact_ids"] == ["chat-1", "call-2"]
    assert journey["started_at"] == T0
    chat_row = tables["contact"]["chat-1"]
    assert chat_row["customer_id"] == "cust-B"
    assert chat_row["bot_only"] is True
    assert chat_row["events"] == 4  # the bot exchange before the login is in it
    [signal] = tables["journey_signal"].values()
    assert signal["kind"] == "switch_failure"
    assert (signal["from_contact_id"], signal["to_contact_id"]) == ("chat-1", "call-2")
    assert signal["customer_id"] == "cust-B"


def _wrong_link_then_right_one() -> list[InteractionEvent]:
    return [
        event("w1", T0, CONTACT_STARTED),
        link("w2", T0 + 1 * MINUTE, "cust-A"),
        event("w3", T0 + 5 * MINUTE, AGENT_REPLY, actor=AGENT),
        event("w4", T0 + 6 * MINUTE, CONTACT_ENDED, actor=AGENT, outcome=RESOLVED),
        # The agent sees it was not customer A: the link is undone and the
        # caller is identified as B from the same moment.
        link("w5", T0 + 8 * MINUTE, "cust-A", UNLINKED),
        link("w6", T0 + 1 * MINUTE, "cust-B"),
        # Customer A's own traffic goes on.
        event("x1", T0 + 9 * MINUTE, CONTACT_STARTED, customer="cust-A", channel="chat",
              contact="chat-9", identifier=None),
        event("x2", T0 + 10 * MINUTE, CONTACT_ENDED, customer="cust-A", channel="chat",
              contact="chat-9", identifier=None, actor=AGENT, outcome=RESOLVED),
    ]  # fmt: skip


def test_a_call_linked_to_a_then_unlinked_and_linked_to_b_is_counted_once_for_b():
    result = replay_events(_wrong_link_then_right_one(), SETTINGS, partitions=2)
    tables = collapse(result.records)

    by_customer = {s["customer_id"]: s for s in finals(tables)}
    assert sorted(by_customer) == ["cust-A", "cust-B"]
    assert by_customer["cust-B"]["contact_ids"] == ["call-1"]
    assert by_customer["cust-B"]["started_at"] == T0
    assert by_customer["cust-A"]["contact_ids"] == ["chat-9"]  # only its own chat
    # Any journey of A that held the call was taken back: superseded, counted nowhere.
    assert all(
        s["status"] == SESSION_SUPERSEDED
        for s in tables["session"].values()
        if s["customer_id"] == "cust-A" and "call-1" in s["contact_ids"]
    )
    assert tables["contact"]["call-1"]["customer_id"] == "cust-B"
    [breach] = [b for b in counted_breaches(tables) if b["contact_id"] == "call-1"]
    assert breach["customer_id"] == "cust-B"
    assert sum(s["contacts"] for s in finals(tables)) == len(tables["contact"]) == 2
    assert result.reattribution["reattributions"] >= 1


def test_the_rows_a_customer_loses_are_corrected_on_its_partition():
    processor = PartitionProcessor.from_settings(SETTINGS)
    stage = IdentityStage(IdentityRules.from_settings(SETTINGS.identity), 1)
    sent = []
    for item in _wrong_link_then_right_one()[:5]:
        for routed in stage.process(item):
            if isinstance(routed, CustomerEvent):
                sent += (
                    processor.process_released(routed.event)
                    if routed.released
                    else processor.process(routed.event)
                )
            else:
                assert isinstance(routed, Unattribution)
                assert routed.customer_key == "cust-A"
                assert routed.event_ids == ("w1", "w3", "w4")
                sent += processor.flush_updates()
                corrections = processor.unattribute(routed.customer_key, routed.event_ids)
    a_rows = {(r.OUTPUT_NAME, r.key): r for r in sent if r.customer_id == "cust-A"}
    corrected = {(r.OUTPUT_NAME, r.key): r for r in corrections}
    [session_key] = [k for k in a_rows if k[0] == "session"]
    assert corrected[session_key].status == SESSION_SUPERSEDED
    assert corrected[session_key].version > a_rows[session_key].version
    # The call went to B as a whole: B sends its SLA records again under the same
    # keys, so A retracts none (a retraction arriving after B's would undo them).
    assert not [k for k in corrected if k[0] == "sla_event"]
    assert processor.reattribution.events_unattributed == 3
    # The rebuilt customer holds nothing of the call any more.
    assert processor.unattribute("cust-A", ["w1"]) == []


def test_held_events_beyond_the_hold_are_processed_as_an_anonymous_customer_and_counted():
    chat = {"channel": "chat", "contact": "chat-5", "identifier": ("chat_session", "s-5")}
    events = [
        event("h1", T0, CONTACT_STARTED, **chat),
        event("h2", T0 + 10 * SECOND, CUSTOMER_MESSAGE, **chat),
        event("h3", T0 + 30 * SECOND, CONTACT_ENDED, outcome=UNRESOLVED, **chat),
        # Other traffic moves the identity partition's clock past the hold (15 min).
        event("o1", T0 + 20 * MINUTE, CONTACT_STARTED, **chat | {"contact": "chat-6"}),
    ]
    result = replay_events(events, SETTINGS, partitions=1)
    tables = collapse(result.records)

    assert result.identity["expired_hold"] == 3
    assert result.identity["expired_at_end"] == 1  # o1, still held when the input ends
    row = tables["contact"]["chat-5"]
    assert row["customer_id"].startswith("anon:chat_session:")
    assert "s-5" not in row["customer_id"]
    # One anonymous customer per identifier: both chats are its one journey, counted.
    [journey] = finals(tables)
    assert journey["customer_id"] == row["customer_id"]
    assert journey["contact_ids"] == ["chat-5", "chat-6"]


def test_an_identifier_reused_by_two_customers_gives_each_period_to_its_customer():
    events = [
        link("r1", T0, "cust-A"),
        event("r2", T0, CONTACT_STARTED),
        event("r3", T0 + 4 * MINUTE, CONTACT_ENDED, actor=AGENT, outcome=RESOLVED),
        # Months later the number is someone else's; the IVR identifies the caller.
        link("r4", T0 + 3 * HOUR, "cust-B"),
        event("r5", T0 + 3 * HOUR, CONTACT_STARTED, contact="call-2"),
        event("r6", T0 + 3 * HOUR + 4 * MINUTE, CONTACT_ENDED, contact="call-2", actor=AGENT,
              outcome=RESOLVED),
    ]  # fmt: skip
    tables = collapse(replay_events(events, SETTINGS, partitions=2).records)

    assert tables["contact"]["call-1"]["customer_id"] == "cust-A"
    assert tables["contact"]["call-2"]["customer_id"] == "cust-B"
    assert sorted(s["customer_id"] for s in finals(tables)) == ["cust-A", "cust-B"]


def test_a_replay_without_identity_events_is_unchanged_by_the_stage():
    plain = [
        dataclasses.replace(e, customer_id="cust-P", identifier_kind=None, identifier_value=None)
        for e in (
            event("p1", T0, CONTACT_STARTED),
            event("p2", T0 + MINUTE, CONTACT_ENDED, actor=AGENT, outcome=RESOLVED),
        )
    ]
    result = replay_events(plain, SETTINGS, partitions=2)
    assert result.identity == {}
    assert result.reattribution == {}


def _worker_like(events: list[InteractionEvent]) -> list:
    """One partition, one identity stage, open records flushed after every record (as a
    worker's batches would), then the end of input: every record sent, in order."""
    processor = PartitionProcessor.from_settings(SETTINGS)
    stage = IdentityStage(IdentityRules.from_settings(SETTINGS.identity), 1)
    sent: list = []

    def deliver(routed_items) -> None:
        for routed in routed_items:
            if isinstance(routed, CustomerEvent):
                apply = processor.process_released if routed.released else processor.process
                sent.extend(apply(routed.event))
            else:
                sent.extend(processor.unattribute(routed.customer_key, routed.event_ids))
            sent.extend(processor.flush_updates())

    for item in events:
        deliver(stage.process(item))
    deliver(stage.end_of_input(max(e.occurred_at for e in events)))
    sent.extend(processor.end_of_input())
    return sent


def test_the_sql_tables_count_a_re_attributed_call_once(tmp_path):
    import sqlite3

    from pipeline.replay_sql import write_records_to_sql

    url = f"sqlite:///{tmp_path / 'cx.db'}"
    write_records_to_sql(_worker_like(_wrong_link_then_right_one()), build_settings(
        {"sql": {"url": url}}))  # fmt: skip
    with sqlite3.connect(tmp_path / "cx.db") as db:
        journeys = db.execute(
            "SELECT customer_id, contacts FROM sessions WHERE status = 'final' ORDER BY 1"
        ).fetchall()
        superseded = db.execute(
            "SELECT customer_id FROM sessions WHERE status = 'superseded'"
        ).fetchall()
        call = db.execute("SELECT customer_id FROM contacts WHERE contact_id = 'call-1'").fetchall()
        breaches = db.execute(
            "SELECT customer_id FROM sla_events WHERE kind = 'breach' AND contact_id = 'call-1'"
        ).fetchall()
        stats = db.execute(
            "SELECT SUM(contacts_started), SUM(sla_breaches) FROM channel_stats"
            " WHERE bucket_size = 'minute'"
        ).fetchone()
    assert journeys == [("cust-A", 1), ("cust-B", 1)]
    assert superseded == [("cust-A",)]  # the open journey A had been sent, taken back
    assert call == [("cust-B",)]
    assert breaches == [("cust-B",)]
    assert stats == (2, 2)  # the call and A's chat; the call's breach and the chat's


def test_a_restarted_partition_still_takes_back_what_identity_gave_before_the_restart():
    events = _wrong_link_then_right_one()
    stage = IdentityStage(IdentityRules.from_settings(SETTINGS.identity), 1)
    first = PartitionProcessor.from_settings(SETTINGS)
    routed = [r for e in events[:4] for r in stage.process(e)]
    for item in routed:
        first.process_released(item.event)
    first.flush_updates()  # the batch's end: A's open journey is sent, then the state
    restarted = PartitionProcessor.from_settings(SETTINGS)
    for customer_id, data in first.take_dirty().items():
        assert data is not None
        restarted.load_state(customer_id, data)
    restarted.load_clock(first.clock_ms)

    [unattribution] = [r for r in stage.process(events[4]) if isinstance(r, Unattribution)]
    corrections = restarted.unattribute(unattribution.customer_key, unattribution.event_ids)
    assert restarted.reattribution.events_unattributed == 3
    assert [(r.OUTPUT_NAME, r.status) for r in corrections] == [("session", SESSION_SUPERSEDED)]
    uninterrupted = first.unattribute(unattribution.customer_key, unattribution.event_ids)
    assert [r.to_dict() for r in corrections] == [r.to_dict() for r in uninterrupted]


def test_the_link_history_comes_out_as_periods_with_the_identifier_pseudonymised():
    result = replay_events(_wrong_link_then_right_one(), SETTINGS, partitions=2)
    [period] = result.identity_links
    assert period.customer_id == "cust-B"  # A's link at the same moment was replaced
    assert (period.valid_from, period.valid_to) == (T0 + MINUTE, None)
    assert period.identifier.startswith("phone:") and PHONE not in period.identifier


def test_a_number_that_changes_hands_has_one_period_per_customer():
    events = [
        link("r1", T0, "cust-A"),
        link("r4", T0 + 3 * HOUR, "cust-B"),
        link("r5", T0 + 3 * HOUR + MINUTE, "cust-B", UNLINKED),
    ]
    periods = sorted(replay_events(events, SETTINGS).identity_links, key=lambda p: p.valid_from)
    assert [(p.customer_id, p.valid_from, p.valid_to) for p in periods] == [
        ("cust-A", T0, T0 + 3 * HOUR),
        (None, T0 + 3 * HOUR, None),  # B's link was wrong: no customer from then on
    ]


def test_replay_file_takes_identity_events_and_writes_the_link_periods(tmp_path, capsys):
    import json

    from pipeline.replay import replay_file

    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps(e.to_json_dict()) + "\n" for e in _wrong_link_then_right_one())
    )
    result = replay_file(source, SETTINGS, tmp_path / "out", wall_ms=lambda: T0 + HOUR)
    assert result.rejected == 0
    summary = capsys.readouterr().out
    assert "linked=2 unlinked=1 expired_to_anonymous=0 reattributed_events=3" in summary
    [line] = (tmp_path / "out" / "identity_links.jsonl").read_text().splitlines()
    assert json.loads(line)["customer_id"] == "cust-B"
    assert PHONE not in (tmp_path / "out" / "identity_links.jsonl").read_text()


def test_the_new_owner_s_rows_survive_the_old_owner_s_correction_arriving_after_them():
    # The worker's two customers are on different partitions: B may get the call
    # through the re-keyed topic before A gets the unattribute.
    stage = IdentityStage(IdentityRules.from_settings(SETTINGS.identity), 1)
    processor = PartitionProcessor.from_settings(SETTINGS)
    sent: list = []
    held_back: list = []
    for item in _wrong_link_then_right_one()[:6]:
        for routed in stage.process(item):
            if isinstance(routed, Unattribution):
                held_back.append(routed)  # A's partition lags behind
            elif routed.released:
                sent += processor.process_released(routed.event)
            else:
                sent += processor.process(routed.event)
    for routed in held_back:
        sent += processor.unattribute(routed.customer_key, routed.event_ids)
    sent += processor.end_of_input()
    tables = collapse(sent)
    call_clock = {k: e for k, e in tables["sla_event"].items() if e["contact_id"] == "call-1"}
    assert {(e["kind"], e["customer_id"]) for e in call_clock.values()} == {
        ("warning", "cust-B"),
        (SLA_BREACH, "cust-B"),
        ("completed", "cust-B"),
    }
    assert tables["contact"]["call-1"]["customer_id"] == "cust-B"
    assert [s["customer_id"] for s in finals(tables)] == ["cust-B"]


def test_with_pseudonymisation_on_the_replay_hashes_identifiers_with_the_sink_s_key(tmp_path):
    from pipeline.core.identity import anonymous_customer

    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    settings = build_settings({"sql": {"pseudonymise": True, "pseudonym_key_file": str(key)}})
    events = [event("k1", T0, CONTACT_STARTED), event("k2", T0 + MINUTE, CONTACT_STARTED)]
    result = replay_events(events, settings, partitions=1)
    [row] = collapse(result.records)["contact"].values()
    assert row["customer_id"] == anonymous_customer("phone", PHONE, b"k" * 32)
    assert row["customer_id"] != anonymous_customer("phone", PHONE, None)


def test_journeys_older_than_the_unlink_window_stay_when_a_recent_event_is_taken_back():
    settings = build_settings({"identity": {"unlink_window": "3h"}})
    processor = PartitionProcessor.from_settings(settings)
    sent: list = []

    def given(event_id, at, type_, contact, **fields):
        released = dataclasses.replace(
            event(event_id, at, type_, contact=contact, **fields), customer_id="cust-A"
        )
        sent.extend(processor.process_released(released))

    given("o1", T0, CONTACT_STARTED, "call-1", topic="loan")
    given("o2", T0 + 2 * MINUTE, CONTACT_ENDED, "call-1", actor=AGENT, outcome=RESOLVED)
    # Hours later (the old journey closed long ago, its events left the window):
    given("n1", T0 + 4 * HOUR, CONTACT_STARTED, "call-2", topic="card")
    given("n2", T0 + 4 * HOUR + MINUTE, CONTACT_ENDED, "call-2", actor=AGENT, outcome=RESOLVED)
    [old_journey] = [r.session_id for r in sent if r.OUTPUT_NAME == "session"]

    corrections = processor.unattribute("cust-A", ["n1", "n2"])
    assert old_journey not in {r.key for r in corrections if r.OUTPUT_NAME == "session"}
    assert not [r for r in corrections if r.OUTPUT_NAME == "need" and "loan" in r.need_id]


def test_a_rebuild_leaves_the_journal_s_snapshot_as_it_was():
    import json

    from pipeline.contract.event import FEEDBACK

    processor = PartitionProcessor.from_settings(SETTINGS)
    chat = {"channel": "chat", "contact": "chat-1", "identifier": None, "customer": "cust-A"}
    processor.process(event("s1", T0, CONTACT_STARTED, **chat))
    processor.process(event("s2", T0 + SECOND, FEEDBACK, score=9, **chat))
    before = json.loads(processor.take_dirty()["cust-A"])
    # The customer's first event through identity: the journal's snapshot is taken.
    released = dataclasses.replace(
        event("s3", T0 + 2 * SECOND, FEEDBACK, score=3, channel="chat", contact="chat-1"),
        customer_id="cust-A",
    )
    processor.process_released(released)
    processor.process(event("s4", T0 + 3 * SECOND, FEEDBACK, score=7, **chat))
    state = json.loads(processor.take_dirty()["cust-A"])
    snapshot = json.dumps(state["identity_journal"]["snapshot"], sort_keys=True)
    assert snapshot == json.dumps(before, sort_keys=True)  # later scores did not leak in

    processor.unattribute("cust-A", ["s3"])
    processor.unattribute("cust-A", ["s4-unknown"])
    journal = json.loads(processor.take_dirty()["cust-A"])["identity_journal"]
    assert json.dumps(journal["snapshot"], sort_keys=True) == snapshot


def test_a_reply_held_by_identity_past_the_retraction_window_still_retracts_the_breach():
    """Identity holds an anonymous chat up to ``identity.hold`` (15 min); when it is
    released the customers' clock is far past its SLA due times, so its deadlines
    fire before its own reply is applied. The reply, 40 s after the chat started,
    retracts them even though that is more than ``sla.retraction_window`` (10 min)
    after they fell due: an event with a channel identifier retracts within
    hold + grace, so the hold cannot turn an answered chat into a breach."""
    chat = {"channel": "chat", "contact": "chat-7", "identifier": ("chat_session", "s-7")}
    events = [
        event("r1", T0, CONTACT_STARTED, **chat),
        event("r2", T0 + 10 * SECOND, CUSTOMER_MESSAGE, **chat),
        event("r3", T0 + 40 * SECOND, AGENT_REPLY, actor=AGENT, **chat),
        event("r4", T0 + 60 * SECOND, CONTACT_ENDED, actor=AGENT, outcome=RESOLVED, **chat),
        # Another customer's own event moves the customers' partition clock on ...
        event("x1", T0 + 16 * MINUTE, CONTACT_STARTED, customer="cust-X", identifier=None),
        # ... and other held traffic moves identity's clock past the hold.
        event("o1", T0 + 17 * MINUTE, CONTACT_STARTED, **chat | {"contact": "chat-8"}),
    ]
    result = replay_events(events, SETTINGS, partitions=1)
    tables = collapse(result.records)

    assert result.identity["expired_hold"] == 4
    standing = [
        e
        for e in tables["sla_event"].values()
        if e["contact_id"] == "chat-7" and e["kind"] != "retracted"
    ]
    assert standing == []
    assert tables["contact"]["chat-7"]["first_reply_seconds"] == 40.0


def test_a_held_chat_identified_after_the_grace_still_is_the_next_contact_of_a_failed_one():
    """A's chat ends unresolved; A's next contact, by start time, is an anonymous
    chat (a repeat in the same channel, no switch failure), identified 6.5 min
    after it started, later than the grace after A's web message. The pair waits
    grace + identity.hold after the next contact's start, so the held chat takes
    its place as in a replay where the chat carried A's id from the start."""
    a = {"customer": "cust-A", "identifier": None}
    chat = {"channel": "chat", "contact": "chat-2", "identifier": ("chat_session", "s-9")}
    web = {"channel": "web_message", "contact": "web-3", **a}
    failed = [
        event("a1", T0, CONTACT_STARTED, channel="chat", contact="chat-1", **a),
        event(
            "a2",
            T0 + MINUTE,
            CONTACT_ENDED,
            actor=AGENT,
            outcome=UNRESOLVED,
            channel="chat",
            contact="chat-1",
            **a,
        ),
    ]
    later = [
        event("c1", T0 + 165 * SECOND, CONTACT_STARTED, **web),
        event("c2", T0 + 8 * MINUTE, CUSTOMER_MESSAGE, **web),
        event("c3", T0 + 10 * MINUTE, CUSTOMER_MESSAGE, **web),
    ]
    held = [
        event("b1", T0 + 150 * SECOND, CONTACT_STARTED, **chat),
        link("b2", T0 + 9 * MINUTE, "cust-A", **chat),
    ]
    known = [event("b1", T0 + 150 * SECOND, CONTACT_STARTED, **chat | a)]
    with_identity = replay_events([*failed, held[0], *later[:2], held[1], later[2]], SETTINGS)
    known_from_start = replay_events([*failed, *known, *later], SETTINGS)

    def signals(result):
        return sorted(collapse(result.records)["journey_signal"])

    assert signals(with_identity) == signals(known_from_start) == []
    contacts = collapse(with_identity.records)["contact"]
    assert contacts["chat-2"]["customer_id"] == "cust-A"
