"""The partition processor: sessions, lateness, duplicates, SLA timers, eviction, restart."""

import pytest

from pipeline.contract.event import AGENT_REPLY, CONTACT_ENDED, FEEDBACK
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import ContactSummary, LateEvent, SessionRecord, SlaEvent
from tests.unit.core_standins import (
    HOUR,
    MINUTE,
    T0,
    StandInPolicy,
    contact,
    ev,
    make_processor,
    run,
)

GAP = 30 * MINUTE
GRACE = 5 * MINUTE


def sessions(records, status="final") -> list[SessionRecord]:
    return [r for r in records if isinstance(r, SessionRecord) and r.status == status]


def test_two_events_exactly_one_gap_apart_make_one_session():
    out = run(make_processor(), [ev(T0), ev(T0 + GAP)])
    assert [(s.started_at, s.ended_at, s.events) for s in sessions(out)] == [(T0, T0 + GAP, 2)]


def test_two_events_one_gap_and_a_millisecond_apart_make_two_sessions():
    out = run(make_processor(), [ev(T0), ev(T0 + GAP + 1)])
    assert [(s.started_at, s.events) for s in sessions(out)] == [(T0, 1), (T0 + GAP + 1, 1)]


def test_bridging_event_emits_exactly_one_superseded_record_for_the_later_session():
    processor = make_processor()
    out = run(
        processor,
        [
            ev(T0, event_id="a"),
            ev(T0 + 33 * MINUTE, event_id="b"),
            ev(T0 + 16 * MINUTE, event_id="c"),
        ],
    )
    superseded = sessions(out, "superseded")
    final = sessions(out)
    assert len(superseded) == 1
    assert len(final) == 1
    assert superseded[0].superseded_by == final[0].session_id
    assert (superseded[0].started_at, final[0].started_at, final[0].events) == (
        T0 + 33 * MINUTE,
        T0,
        3,
    )
    assert processor.stats.sessions_superseded == 1


def test_session_closes_only_after_end_plus_gap_plus_grace():
    processor = make_processor()
    processor.process(ev(T0))
    assert sessions(processor.advance(T0 + GAP + GRACE)) == []
    closed = sessions(processor.advance(T0 + GAP + GRACE + 1))
    assert [(s.status, s.version) for s in closed] == [("final", 1)]
    assert processor.stats.sessions_closed == 1


def test_event_beyond_gap_plus_grace_behind_the_clock_is_late_and_kept():
    processor = make_processor()
    processor.process(ev(T0 + 2 * GAP + GRACE + 1, customer="c2"))
    out = processor.process(ev(T0 + GAP, event_id="old"))
    assert [(r.event_id, r.event["event_id"]) for r in out if isinstance(r, LateEvent)] == [
        ("old", "old")
    ]
    assert processor.stats.late == 1
    assert processor.open_sessions() == 1


def test_event_within_the_gap_of_a_closed_session_is_late():
    processor = make_processor()
    processor.process(ev(T0))
    processor.advance(T0 + GAP + GRACE + 1)  # closes the session
    out = processor.process(ev(T0 + 20 * MINUTE, event_id="stray"))
    assert [r.reason for r in out if isinstance(r, LateEvent)] == [
        "falls within the gap of a session that has already closed"
    ]
    assert processor.stats.late == 1


def test_duplicate_event_id_is_dropped_and_counted():
    processor = make_processor()
    first = ev(T0, event_id="dup")
    out = run(processor, [first, ev(T0 + MINUTE), first])
    assert [s.events for s in sessions(out)] == [2]
    assert processor.stats.duplicates == 1
    assert processor.stats.events == 3


def test_breach_fires_via_advance_with_no_further_event():
    policy = StandInPolicy("chat_first_reply", "chat", 2 * MINUTE)
    processor = make_processor(policies=(policy,))
    processor.process(ev(T0, contact="k1"))
    assert processor.oldest_open_sla_clock() == {"chat": T0}
    assert processor.advance(T0 + 2 * MINUTE - 1) == []
    fired = processor.advance(T0 + 10 * MINUTE)
    assert [(r.kind, r.fired_at) for r in fired if isinstance(r, SlaEvent)] == [
        ("breach", T0 + 2 * MINUTE)
    ]


def test_contact_summary_on_end_and_for_unended_contacts_at_session_close():
    out = run(
        make_processor(),
        [
            *contact(T0, T0 + MINUTE, contact="k1", channel="phone", outcome="resolved"),
            ev(T0 + 2 * MINUTE, contact="k2", channel="chat", topic="loans"),
        ],
    )
    summaries = [
        (r.contact_id, r.ended_at, r.outcome, r.topic) for r in out if isinstance(r, ContactSummary)
    ]
    # k1 has no topic: any next contact repeats its need, so the end of input
    # settles it (a new version) before the journey closes and sends k2; then the
    # close lets k1 go, which settles its service level (one more version).
    assert summaries == [
        ("k1", T0 + MINUTE, "resolved", None),
        ("k1", T0 + MINUTE, "resolved", None),
        ("k2", None, None, "loans"),
        ("k1", T0 + MINUTE, "resolved", None),
    ]


def test_session_record_fields_follow_the_contacts():
    out = run(
        make_processor(),
        [
            *contact(T0, T0 + MINUTE, contact="k1", channel="chat", outcome="unresolved"),
            *contact(
                T0 + 2 * MINUTE, T0 + 3 * MINUTE, contact="k2", channel="chat", outcome="unresolved"
            ),
            *contact(
                T0 + 4 * MINUTE, T0 + 9 * MINUTE, contact="k3", channel="phone", outcome="resolved"
            ),
            ev(T0 + 10 * MINUTE, contact="k3", channel="phone", type=FEEDBACK, score=9),
        ],
    )
    (final,) = sessions(out)
    assert (
        final.channel_path,
        final.contacts,
        final.events,
        final.channel_switches,
        final.first_contact_resolved,
        final.resolved_at_end,
        final.switch_failures,
        final.nps_score,
        final.contact_ids,
    ) == (
        ["chat", "phone"],
        3,
        7,
        1,
        False,
        True,
        1,
        9,
        ["k1", "k2", "k3"],
    )


def test_flush_updates_returns_changed_open_sessions_once_with_rising_versions():
    processor = make_processor()
    processor.process(ev(T0))
    first = processor.flush_updates()
    assert [(r.status, r.version) for r in first] == [("open", 1)]
    assert processor.flush_updates() == []
    processor.process(ev(T0 + MINUTE))
    assert [(r.status, r.version, r.events) for r in processor.flush_updates()] == [("open", 2, 2)]
    closed = sessions(processor.advance(T0 + MINUTE + GAP + GRACE + 1))
    assert [r.version for r in closed] == [3]


def test_customer_is_evicted_after_everything_settles():
    processor = make_processor()
    run(
        processor,
        contact(T0, T0 + MINUTE, contact="k1", channel="chat", outcome="unresolved"),
        finish=False,
    )
    processor.take_dirty()
    processor.advance(T0 + 2 * 3_600_000)
    assert processor.customers() == 1  # dedup ids and the switch window still hold it
    # Dedup ids are pruned in half-hour buckets (T0 is on a bucket boundary).
    processor.advance(T0 + 86_400_000 + 1_800_000)
    assert processor.customers() == 0
    assert processor.take_dirty() == {"c1": None}
    assert processor.stats.customers_evicted == 1


def _journey() -> list:
    events = [
        *contact(
            T0, T0 + 5 * MINUTE, contact="k1", channel="chat", outcome="unresolved", topic="cards"
        ),
        ev(T0 + 6 * MINUTE, contact="k2", channel="web_message"),
        ev(T0 + 7 * MINUTE, customer="c2", contact="x1", channel="chat"),
        ev(T0 + 9 * MINUTE, contact="k2", channel="web_message", type=AGENT_REPLY, actor="agent"),
        ev(T0 + 40 * MINUTE, customer="c2", contact="x1", channel="chat"),
        ev(T0 + 20 * MINUTE, customer="c2", contact="x1", channel="chat"),  # bridges
        ev(
            T0 + 3 * 3_600_000,
            contact="k3",
            channel="phone",
            type=CONTACT_ENDED,
            actor="system",
            outcome="resolved",
        ),
        ev(T0 + 4 * 3_600_000, customer="c3", contact="z1", channel="phone"),
        ev(T0 + 2 * 3_600_000, contact="k9", channel="phone"),  # late
        ev(T0 + 9 * 3_600_000, customer="c3", contact="z1", channel="phone"),
    ]
    return events


def _policies():
    return (
        StandInPolicy("chat_fr", "chat", 3 * MINUTE),
        StandInPolicy("msg_fr", "web_message", 2 * MINUTE),
    )


def test_restart_from_take_dirty_state_gives_the_same_outputs_as_uninterrupted():
    events = _journey()
    for cut in range(1, len(events)):
        original = make_processor(policies=_policies())
        expected = run(original, events)

        first = make_processor(policies=_policies())
        before = run(first, events[:cut], finish=False)
        state = first.take_dirty()
        restored = make_processor(policies=_policies())
        restored.load_clock(first.clock_ms)
        for customer_id, data in state.items():
            if data is not None:
                restored.load_state(customer_id, data)
        after = run(restored, events[cut:])
        assert before + after == expected, f"cut at {cut}"


def test_from_settings_builds_a_processor_when_the_sla_module_is_present():
    pytest.importorskip("pipeline.core.sla", reason="pipeline.core.sla has not landed yet")
    from pipeline.settings_loader import build_settings

    processor = PartitionProcessor.from_settings(build_settings(), partition=3)
    out = run(processor, [ev(T0, channel="web_message"), ev(T0 + MINUTE, channel="web_message")])
    assert [s.events for s in sessions(out)] == [2]


# -- journeys follow open synchronous contacts (issue 13, defect 4) ------------------------

SYNCHRONOUS = ("branch", "phone", "chat", "web_meeting")


def _visit(start_ms: int, end_ms: int, contact_id: str = "v1") -> list:
    return contact(start_ms, end_ms, contact=contact_id, channel="branch", outcome="resolved")


def test_a_branch_visit_longer_than_the_gap_with_no_events_between_is_one_journey():
    processor = make_processor(synchronous=SYNCHRONOUS)
    out = run(processor, _visit(T0, T0 + 40 * MINUTE))  # 09:00 to 09:40, gap 30 min
    assert [(s.started_at, s.ended_at, s.events, s.contacts) for s in sessions(out)] == [
        (T0, T0 + 40 * MINUTE, 2, 1)
    ]


def test_an_open_synchronous_contact_keeps_its_journey_from_closing():
    processor = make_processor(synchronous=SYNCHRONOUS)
    processor.process(_visit(T0, T0 + 50 * MINUTE)[0])
    assert sessions(processor.advance(T0 + 45 * MINUTE)) == []
    assert processor.open_sessions() == 1


def test_an_asynchronous_thread_does_not_keep_its_journey_open():
    processor = make_processor(synchronous=SYNCHRONOUS)
    out = run(
        processor,
        [
            ev(T0, contact="m1", channel="web_message"),
            ev(T0 + 40 * MINUTE, contact="m1", channel="web_message"),
        ],
    )
    assert [s.events for s in sessions(out)] == [1, 1]


def test_a_synchronous_contact_whose_end_never_arrives_holds_its_journey_for_max_open_contact():
    processor = make_processor(synchronous=SYNCHRONOUS, max_open_contact_seconds=4 * 3600.0)
    processor.process(_visit(T0, T0 + HOUR)[0])
    held_until = T0 + 4 * HOUR
    assert sessions(processor.advance(held_until + GAP + GRACE)) == []
    closed = sessions(processor.advance(held_until + GAP + GRACE + 1))
    assert [(s.started_at, s.ended_at, s.events) for s in closed] == [(T0, T0, 1)]


def test_an_event_after_max_open_contact_plus_the_gap_starts_a_new_journey():
    processor = make_processor(synchronous=SYNCHRONOUS, max_open_contact_seconds=4 * 3600.0)
    out = run(
        processor,
        [_visit(T0, T0 + HOUR)[0], ev(T0 + 4 * HOUR + GAP + 1, contact="k2", channel="chat")],
    )
    assert [s.events for s in sessions(out)] == [1, 1]


def test_the_end_of_a_long_visit_is_not_late_while_the_visit_is_open():
    processor = make_processor(synchronous=SYNCHRONOUS)
    out = run(processor, [*_visit(T0, T0 + 3 * HOUR), ev(T0 + 3 * HOUR + MINUTE, contact="k2")])
    assert [r for r in out if isinstance(r, LateEvent)] == []
    assert [(s.events, s.contacts) for s in sessions(out)] == [(3, 2)]
