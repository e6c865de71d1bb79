"""FCR by need, bot containment and feedback per contact (issue 13, defects 6 and 7).

A contact is first-contact resolved when it ended resolved and the customer made no
further contact on the same topic within the repeat window (the false-resolution
window, 7 days); a bot-only contact not followed by one is contained. Both stay
undecided (None) until the window passes or a repeat arrives, and the decision goes
out as a new version of the contact and, for a journey's first contact, of the
journey.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pipeline.contract.event import AGENT_REPLY, CONTACT_ENDED, CONTACT_STARTED, FEEDBACK
from pipeline.core.records import ContactSummary, SessionRecord
from pipeline.metrics import Metrics
from pipeline.replay import collapse
from tests.unit.core_standins import HOUR, MINUTE, T0, contact, ev, make_processor, run

DAY = 24 * HOUR
GRACE = 5 * MINUTE


def _resolved_call(start: int, *, contact_id: str, topic: str = "card") -> list:
    return contact(
        start,
        start + 10 * MINUTE,
        contact=contact_id,
        channel="phone",
        outcome="resolved",
        topic=topic,
    )


def test_a_resolved_contact_is_first_contact_resolved_once_the_repeat_window_passes():
    processor = make_processor()
    out = run(processor, _resolved_call(T0, contact_id="p1"))
    out += processor.advance(T0 + 10 * MINUTE + 7 * DAY + GRACE + 1)

    versions = [(r.version, r.first_contact_resolved) for r in out if isinstance(r, ContactSummary)]
    # The end, the end of input settling its service level, the decision.
    assert versions == [(1, None), (2, None), (3, True)]
    journeys = [
        (r.version, r.first_contact_resolved, r.fcr_undecided, r.correction)
        for r in out
        if isinstance(r, SessionRecord) and r.status == "final"
    ]
    assert journeys == [(1, False, True, False), (2, True, False, True)]


def test_a_resolved_contact_followed_next_day_on_the_same_topic_is_not_first_contact_resolved():
    processor = make_processor()
    events = _resolved_call(T0, contact_id="p1") + _resolved_call(T0 + DAY, contact_id="p2")
    out = run(processor, events)
    out += processor.advance(T0 + DAY + GRACE + 1)

    contacts = collapse(out)["contact"]
    assert contacts["p1"]["first_contact_resolved"] is False
    sessions = collapse(out)["session"]
    first_journey = next(s for s in sessions.values() if s["contact_ids"] == ["p1"])
    assert (first_journey["first_contact_resolved"], first_journey["first_outcome_resolved"]) == (
        False,
        True,
    )
    assert first_journey["fcr_undecided"] is False


def test_a_contact_on_another_topic_does_not_undo_first_contact_resolution():
    processor = make_processor()
    events = _resolved_call(T0, contact_id="p1") + _resolved_call(
        T0 + DAY, contact_id="p2", topic="loan"
    )
    out = run(processor, events)
    out += processor.advance(T0 + 10 * MINUTE + 7 * DAY + GRACE + 1)

    assert collapse(out)["contact"]["p1"]["first_contact_resolved"] is True


def test_an_unanswered_web_message_is_undecided_not_unresolved_when_its_journey_closes():
    processor = make_processor()
    out = run(processor, [ev(T0, contact="m1", channel="web_message", topic="card")])
    out += processor.advance(T0 + 40 * MINUTE)

    (summary,) = [r for r in out if isinstance(r, ContactSummary)]
    (final,) = [r for r in out if isinstance(r, SessionRecord) and r.status == "final"]
    assert (summary.ended_at, summary.first_contact_resolved) == (None, None)
    assert (final.first_contact_resolved, final.fcr_undecided) == (False, True)


def _bot_chat(start: int, *, contact_id: str, human: bool = False, outcome: str = "resolved"):
    events = [
        ev(start, contact=contact_id, type=CONTACT_STARTED, topic="card"),
        ev(start + 1_000, contact=contact_id, type=AGENT_REPLY, actor="bot"),
    ]
    if human:
        events.append(ev(start + 2_000, contact=contact_id, type=AGENT_REPLY, actor="agent"))
    events.append(
        ev(start + 3 * MINUTE, contact=contact_id, type=CONTACT_ENDED, actor="bot", outcome=outcome)
    )
    return events


def test_a_bot_only_chat_without_a_repeat_in_the_window_is_contained():
    processor = make_processor()
    out = run(processor, _bot_chat(T0, contact_id="b1", outcome="unresolved"))
    out += processor.advance(T0 + 3 * MINUTE + 7 * DAY + GRACE + 1)

    summaries = [
        (r.version, r.bot_only, r.contained, r.contained_new)
        for r in out
        if isinstance(r, ContactSummary)
    ]
    # The end, the end of input settling its service level, the decision.
    assert summaries == [(1, True, None, False), (2, True, None, False), (3, True, True, True)]


def test_a_bot_only_chat_followed_by_a_call_on_the_same_topic_is_not_contained():
    processor = make_processor()
    events = _bot_chat(T0, contact_id="b1") + _resolved_call(T0 + HOUR, contact_id="p1")
    out = run(processor, events)
    out += processor.advance(T0 + HOUR + GRACE + 1)

    assert collapse(out)["contact"]["b1"]["contained"] is False


def test_a_chat_a_human_agent_answered_is_not_a_bot_contact():
    processor = make_processor()
    out = run(processor, _bot_chat(T0, contact_id="b1", human=True))
    out += processor.advance(T0 + 8 * DAY)

    row = collapse(out)["contact"]["b1"]
    assert (row["bot_only"], row["contained"]) == (False, None)


def test_every_score_is_kept_on_the_journey_with_its_contact_and_time():
    processor = make_processor()
    events = [
        *_resolved_call(T0, contact_id="p1"),
        ev(T0 + 12 * MINUTE, contact="p1", channel="phone", type=FEEDBACK, score=9, event_id="f1"),
        ev(T0 + 14 * MINUTE, contact="p1", channel="phone", type=FEEDBACK, score=4, event_id="f2"),
    ]
    out = run(processor, events)
    out += processor.advance(T0 + HOUR)

    (journey,) = collapse(out)["session"].values()
    assert journey["feedback"] == [
        {
            "feedback_id": "f1",
            "contact_id": "p1",
            "channel": "phone",
            "kind": "nps",
            "score": 9,
            "given_at": T0 + 12 * MINUTE,
        },
        {
            "feedback_id": "f2",
            "contact_id": "p1",
            "channel": "phone",
            "kind": "nps",
            "score": 4,
            "given_at": T0 + 14 * MINUTE,
        },
    ]
    assert (journey["nps_score"], journey["nps_average"]) == (4, 6.5)


def test_a_customer_whose_resolved_contact_waits_for_its_window_keeps_its_state_until_then():
    processor = make_processor()
    run(processor, _resolved_call(T0, contact_id="p1"))
    processor.advance(T0 + 2 * DAY)
    assert processor.customers() == 1
    processor.advance(T0 + 10 * MINUTE + 7 * DAY + GRACE + 1)
    # The contact goes then, and is kept aside for the session gap plus grace (an
    # event of it dated before could still come).
    assert processor.customers() == 1
    processor.advance(T0 + 10 * MINUTE + 7 * DAY + GRACE + 1 + 30 * MINUTE + GRACE)
    assert processor.customers() == 0


def test_the_containment_metric_counts_each_decided_bot_contact_once():
    processor = make_processor()
    events = [
        *_bot_chat(T0, contact_id="b1"),
        *_bot_chat(T0 + HOUR, contact_id="b2"),
        ev(T0 + HOUR + 5 * MINUTE, contact="b2", type=FEEDBACK, score=10),
    ]
    out = run(processor, events)
    out += processor.advance(T0 + HOUR + 7 * DAY + HOUR)
    out += processor.advance(T0 + 9 * DAY)
    registry = CollectorRegistry()
    metrics = Metrics(registry, channels=("chat",))
    for record in out:
        metrics.observe_output(record)

    def count(contained: str) -> float | None:
        labels = {"channel": "chat", "contained": contained}
        return registry.get_sample_value("cxstream_bot_contacts_total", labels)

    # b1 is repeated by b2 (same topic, an hour later); b2 is followed by nothing.
    assert (count("true"), count("false")) == (1.0, 1.0)
