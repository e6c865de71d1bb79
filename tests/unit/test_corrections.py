"""Corrections flow into the outputs: what happens to a contact or journey after its
record was sent (a breach of a web message whose journey has closed, feedback after
the end) is sent again as a new version, counted once, and a sink keeps the newest."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pipeline.contract.event import AGENT_REPLY, CONTACT_ENDED, CONTACT_STARTED, FEEDBACK
from pipeline.core.records import ContactSummary, SessionRecord, SlaEvent
from pipeline.metrics import Metrics
from pipeline.replay import collapse
from tests.unit.core_standins import HOUR, MINUTE, T0, StandInPolicy, ev, make_processor, run

GAP = 30 * MINUTE
GRACE = 5 * MINUTE
MESSAGE_TARGET = 2 * HOUR


def _message_processor():
    return make_processor(policies=(StandInPolicy("msg_fr", "web_message", MESSAGE_TARGET),))


def _unanswered_message_until_after_the_breach() -> list:
    """A web message nobody answers: its journey closes 35 min later, the breach fires at 2 h."""
    processor = _message_processor()
    out = processor.process(ev(T0, contact="m1", channel="web_message", event_id="m1-1"))
    out += processor.advance(T0 + GAP + GRACE + 1)
    out += processor.advance(T0 + MESSAGE_TARGET)
    return out


def test_a_breach_after_the_journey_closed_rewrites_the_contact_as_breached_in_a_new_version():
    out = _unanswered_message_until_after_the_breach()

    summaries = [(r.version, r.breached) for r in out if isinstance(r, ContactSummary)]
    breaches = [r.contact_id for r in out if isinstance(r, SlaEvent) and r.kind == "breach"]
    assert breaches == ["m1"]
    assert summaries == [(1, False), (2, True)]
    assert collapse(out)["contact"]["m1"]["breached"] is True


def test_a_breach_after_the_journey_closed_sends_the_final_journey_again_with_the_breach():
    out = _unanswered_message_until_after_the_breach()

    finals = [
        (r.status, r.version, r.sla_breaches, r.correction)
        for r in out
        if isinstance(r, SessionRecord)
    ]
    assert finals == [("final", 1, 0, False), ("final", 2, 1, True)]
    session = collapse(out)["session"]
    assert [(s["status"], s["sla_breaches"], s["events"]) for s in session.values()] == [
        ("final", 1, 1)
    ]


def test_a_customer_whose_closed_journey_waits_for_corrections_is_evicted_with_its_contact():
    """The journey record kept for corrections goes with the last contact of it."""
    processor = _message_processor()
    processor.process(ev(T0, contact="m1", channel="web_message"))
    processor.advance(T0 + MESSAGE_TARGET)
    assert processor.customers() == 1
    # An unended thread is kept for the false-resolution window (7 days) after its last
    # event; once let go, it is kept aside for the session gap plus grace (an event of
    # it dated before that could still come, and would find it held in event-time order).
    processor.advance(T0 + 7 * 24 * HOUR + 1)
    assert processor.customers() == 1
    processor.advance(T0 + 7 * 24 * HOUR + 1 + GAP + GRACE)
    assert processor.customers() == 0


def test_a_contact_summary_sent_again_after_feedback_counts_its_first_reply_once():
    processor = make_processor(policies=(StandInPolicy("chat_fr", "chat", 3 * MINUTE),))
    out = run(
        processor,
        [
            ev(T0, contact="k1", channel="chat", type=CONTACT_STARTED),
            ev(T0 + MINUTE, contact="k1", channel="chat"),
            ev(T0 + 2 * MINUTE, contact="k1", channel="chat", type=AGENT_REPLY, actor="agent"),
            ev(
                T0 + 5 * MINUTE,
                contact="k1",
                channel="chat",
                type=CONTACT_ENDED,
                actor="system",
                outcome="resolved",
            ),
            ev(T0 + 6 * MINUTE, contact="k1", channel="chat", type=FEEDBACK, score=9),
        ],
    )
    summaries = [r for r in out if isinstance(r, ContactSummary)]
    # The end, the feedback, and the end of input settling the service level.
    assert [(s.version, s.first_reply_seconds) for s in summaries] == [
        (1, 120.0),
        (2, 120.0),
        (3, 120.0),
    ]

    registry = CollectorRegistry()
    metrics = Metrics(registry, channels=("chat",))
    for record in out:
        metrics.observe_output(record)
    count = registry.get_sample_value("cxstream_first_reply_seconds_count", {"channel": "chat"})
    assert count == 1.0


def test_a_first_reply_after_the_contact_summary_was_sent_is_counted_on_the_next_version():
    processor = _message_processor()
    out = processor.process(ev(T0, contact="m1", channel="web_message"))
    out += processor.advance(T0 + GAP + GRACE + 1)
    out += processor.process(
        ev(T0 + HOUR, contact="m1", channel="web_message", type=AGENT_REPLY, actor="agent")
    )
    summaries = [
        (r.version, r.first_reply_seconds, r.first_reply_new)
        for r in out
        if isinstance(r, ContactSummary)
    ]
    assert summaries == [(1, None, False), (2, 3600.0, True)]


def test_a_corrected_final_journey_is_not_counted_as_a_second_closed_journey():
    out = _unanswered_message_until_after_the_breach()
    registry = CollectorRegistry()
    metrics = Metrics(registry, channels=("web_message",))
    for record in out:
        metrics.observe_output(record)
    assert registry.get_sample_value("cxstream_sessions_closed_total") == 1.0
