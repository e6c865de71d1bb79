"""Event time decides the first reply, not arrival order.

Events of one contact that arrive out of order, but within the session grace
(so they are applied, not sent to late events), give the same first reply and
the same standing warnings and breaches as in-order delivery: a reply that
arrives before the customer message it answers, or after the contact's end it
precedes, is still the contact's first reply, and its SLA clock stops at it.
What arrives later than the grace is out of scope (a late event, not applied).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.contract.event import (
    AGENT,
    AGENT_REPLY,
    BOT,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER,
    CUSTOMER_MESSAGE,
    RESOLVED,
    InteractionEvent,
)
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import ContactSummary, OutputRecord, SlaEvent
from pipeline.core.retraction import SLA_RETRACTED
from pipeline.settings_loader import build_settings

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
STREAM = build_settings({"worker": {"clock": "stream"}})
GRACE_MS = int(STREAM.core.session_grace_seconds * SECOND)


def event(
    name: str, at: int, kind: str, actor: str = CUSTOMER, channel: str = "chat", **fields: Any
) -> InteractionEvent:
    return InteractionEvent(
        event_id=f"c1-{name}",
        occurred_at=at,
        customer_id="c1",
        channel=channel,
        contact_id="k1",
        type=kind,
        actor=actor,
        **fields,
    )


def clock_mover(at: int) -> InteractionEvent:
    """Another customer's event: moves the partition clock past every deadline."""
    return InteractionEvent(
        event_id="c2-later",
        occurred_at=at,
        customer_id="c2",
        channel="chat",
        contact_id="k2",
        type=CUSTOMER_MESSAGE,
        actor=CUSTOMER,
    )


def run(events: list[InteractionEvent]) -> list[OutputRecord]:
    processor = PartitionProcessor.from_settings(STREAM)
    out: list[OutputRecord] = []
    for item in events:
        out += processor.process(item)
    out += processor.end_of_input()
    return out


def final_summary(out: list[OutputRecord]) -> ContactSummary:
    """The newest summary of contact k1, without what counts the summaries sent and
    its journey id (named after the event that arrived first: order-dependent)."""
    (last,) = [r for r in out if isinstance(r, ContactSummary) and r.contact_id == "k1"][-1:]
    return replace(last, version=0, first_reply_new=False, session_id=None)


def standing_sla_records(out: list[OutputRecord]) -> dict[str, tuple[Any, ...]]:
    """Contact k1's SLA records as a keyed consumer ends up with them, retracted ones gone."""
    latest: dict[str, SlaEvent] = {}
    for record in out:
        if isinstance(record, SlaEvent) and record.contact_id == "k1":
            latest[record.sla_event_id] = record
    return {
        key: (r.kind, r.clock_started_at, r.deadline, r.fired_at)
        for key, r in latest.items()
        if r.kind != SLA_RETRACTED
    }


def warnings_and_breaches(out: list[OutputRecord]) -> set[str]:
    return {
        key
        for key, fields in standing_sla_records(out).items()
        if fields[0] in ("warning", "breach")
    }


def test_a_reply_that_arrives_before_the_message_it_answers_is_the_first_reply_within_target():
    # web_message: first reply within 2 h, human only.
    message = event("m", T0, CUSTOMER_MESSAGE, channel="web_message")
    answer = event("r", T0 + 5 * MINUTE, AGENT_REPLY, AGENT, channel="web_message")
    end = event("x", T0 + 10 * MINUTE, CONTACT_ENDED, AGENT, "web_message", outcome=RESOLVED)
    later = clock_mover(T0 + 3 * HOUR)

    in_order = run([message, answer, end, later])
    reply_first = run([answer, message, end, later])

    summary = final_summary(reply_first)
    assert (summary.first_reply_seconds, summary.breached) == (300.0, False)
    assert standing_sla_records(reply_first) == {}
    assert [r for r in reply_first if isinstance(r, SlaEvent)] == []
    assert summary == final_summary(in_order)
    assert standing_sla_records(reply_first) == standing_sla_records(in_order)


def test_a_reply_after_the_deadline_that_arrives_first_completes_the_breach_as_in_order():
    # chat: first reply within 60 s; the reply at 90 s is late by event time.
    message = event("m", T0, CUSTOMER_MESSAGE)
    answer = event("r", T0 + 90 * SECOND, AGENT_REPLY, AGENT)
    later = clock_mover(T0 + HOUR)

    in_order = run([message, answer, later])
    reply_first = run([answer, message, later])

    assert final_summary(reply_first).first_reply_seconds == 90.0
    assert standing_sla_records(reply_first) == standing_sla_records(in_order)
    assert sorted(kind for kind, *_ in standing_sla_records(reply_first).values()) == [
        "breach",
        "completed",
        "warning",
    ]


def test_a_reply_dated_before_the_end_that_arrives_after_it_answers_the_contact():
    message = event("m", T0, CUSTOMER_MESSAGE)
    answer = event("r", T0 + 30 * SECOND, AGENT_REPLY, AGENT)
    end = event("x", T0 + 2 * MINUTE, CONTACT_ENDED, AGENT, outcome=RESOLVED)
    later = clock_mover(T0 + HOUR)

    in_order = run([message, answer, end, later])
    end_first = run([message, end, answer, later])

    summary = final_summary(end_first)
    assert (summary.first_reply_seconds, summary.breached) == (30.0, False)
    assert warnings_and_breaches(end_first) == set() == warnings_and_breaches(in_order)
    assert summary == final_summary(in_order)


def test_a_queued_start_that_arrives_after_the_message_starts_the_first_reply_clock():
    started = event("s", T0, CONTACT_STARTED)
    answer = event("r", T0 + 50 * SECOND, AGENT_REPLY, AGENT)
    message = event("m", T0 + 40 * SECOND, CUSTOMER_MESSAGE)
    later = clock_mover(T0 + HOUR)

    in_order = run([started, message, answer, later])
    start_last = run([message, answer, started, later])

    assert final_summary(start_last).first_reply_seconds == 50.0
    assert final_summary(start_last) == final_summary(in_order)
    # The clock runs from the queued start: its warning (48 s) stands, no breach.
    assert standing_sla_records(start_last) == standing_sla_records(in_order)
    assert [kind for kind, *_ in standing_sla_records(start_last).values()] == ["warning"]


def test_a_message_that_arrives_after_the_end_and_the_reply_still_starts_and_stops_its_clock():
    message = event("m", T0, CUSTOMER_MESSAGE)
    answer = event("r", T0 + 30 * SECOND, AGENT_REPLY, AGENT)
    end = event("x", T0 + 2 * MINUTE, CONTACT_ENDED, AGENT, outcome=RESOLVED)

    in_order = run([message, answer, end, clock_mover(T0 + HOUR)])
    message_last = run([end, answer, message, clock_mover(T0 + HOUR)])

    assert final_summary(message_last).first_reply_seconds == 30.0
    assert final_summary(message_last) == final_summary(in_order)
    assert standing_sla_records(message_last) == standing_sla_records(in_order)


# -- any order within the grace ---------------------------------------------------------

CHANNELS = ("chat", "phone", "web_message")


@st.composite
def contacts(draw: st.DrawFn) -> tuple[list[InteractionEvent], list[int]]:
    """One contact's events in event-time order and an arrival order within the grace.

    One customer message up to 2 minutes after T0 (with or without a queued start at
    T0), one to three agent or bot replies, maybe an end after the message; distinct times up to 10
    minutes after T0, so the chat (60 s) and phone (180 s) targets can pass.
    """
    channel = draw(st.sampled_from(CHANNELS))
    count = draw(st.integers(1, 3))
    ends = draw(st.booleans())
    message_at = T0 + draw(st.integers(0, 120)) * SECOND
    offsets = draw(
        st.lists(st.integers(0, 600), min_size=count + ends, max_size=count + ends, unique=True)
    )
    # Distinct times: events of one time keep their arrival order in any case.
    assume(message_at not in {T0 + offset * SECOND for offset in offsets})
    events = []
    if draw(st.booleans()):
        events.append(event("s", T0, CONTACT_STARTED, channel=channel))
    events.append(event("m", message_at, CUSTOMER_MESSAGE, channel=channel))
    for n, offset in enumerate(offsets[:count]):
        actor = draw(st.sampled_from((AGENT, BOT)))
        events.append(event(f"r{n}", T0 + offset * SECOND, AGENT_REPLY, actor, channel))
    if ends:
        at = T0 + offsets[count] * SECOND
        # A contact ends after its first message (an end before it is no contact).
        assume(at > message_at)
        events.append(event("x", at, CONTACT_ENDED, AGENT, channel, outcome=RESOLVED))
    events.sort(key=lambda item: item.occurred_at)
    # Each event is delayed by up to the grace: none arrives more than the grace
    # after an event dated later than it.
    delays = draw(st.lists(st.integers(0, GRACE_MS), min_size=len(events), max_size=len(events)))
    return events, delays


@settings(max_examples=300, deadline=None)
@given(contacts())
def test_events_shuffled_within_the_grace_give_the_in_order_first_reply_and_breaches(
    contact: tuple[list[InteractionEvent], list[int]],
):
    events, delays = contact
    arrival = [
        item
        for _, _, item in sorted(
            (item.occurred_at + delay, n, item)
            for n, (item, delay) in enumerate(zip(events, delays, strict=True))
        )
    ]
    later = clock_mover(T0 + HOUR)
    in_order = run([*events, later])
    shuffled = run([*arrival, later])

    expected, got = final_summary(in_order), final_summary(shuffled)
    assert (got.first_reply_seconds, got.first_reply_business_seconds) == (
        expected.first_reply_seconds,
        expected.first_reply_business_seconds,
    )
    assert got.breached == expected.breached
    assert warnings_and_breaches(shuffled) == warnings_and_breaches(in_order)
