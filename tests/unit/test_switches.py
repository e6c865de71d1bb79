"""Channel-switch failures and false resolutions, through the partition processor."""

from pipeline.contract.event import InteractionEvent
from pipeline.core.records import JourneySignal
from tests.unit.core_standins import HOUR, MINUTE, T0, contact, make_processor, run

CHAT_END = T0 + 5 * MINUTE


def signals(records) -> list[tuple[str, str, str]]:
    return [
        (r.from_contact_id, r.to_contact_id, r.kind)
        for r in records
        if isinstance(r, JourneySignal)
    ]


def signals_for(events: list[InteractionEvent]) -> list[tuple[str, str, str]]:
    """(from, to, kind) of every journey signal a fresh processor emits for ``events``."""
    return signals(run(make_processor(), events))


def unresolved_chat() -> list[InteractionEvent]:
    """chat1: a five-minute chat from T0 that ends unresolved."""
    return contact(T0, CHAT_END, contact="chat1", channel="chat", outcome="unresolved")


def cards_call_resolved() -> list[InteractionEvent]:
    """call1: a five-minute phone call from T0 about cards, marked resolved."""
    return contact(
        T0, T0 + 5 * MINUTE, contact="call1", channel="phone", outcome="resolved", topic="cards"
    )


def resolved_web_message(contact_id: str, start: int, topic: str) -> list[InteractionEvent]:
    """A one-hour web-message thread from ``start`` on ``topic``, marked resolved."""
    return contact(
        start,
        start + HOUR,
        contact=contact_id,
        channel="web_message",
        outcome="resolved",
        topic=topic,
    )


def test_unresolved_chat_then_phone_within_the_window_is_one_switch_failure():
    events = unresolved_chat()
    events += contact(
        T0 + 2 * HOUR,
        T0 + 2 * HOUR + 5 * MINUTE,
        contact="call1",
        channel="phone",
        outcome="resolved",
    )
    out = run(make_processor(), events)
    assert signals(out) == [("chat1", "call1", "switch_failure")]
    signal = next(r for r in out if isinstance(r, JourneySignal))
    assert (signal.signal_id, signal.gap_seconds, signal.from_outcome) == (
        "chat1>call1:switch_failure",
        6900.0,
        "unresolved",
    )


def test_resolved_chat_then_phone_is_no_switch_failure():
    events = contact(T0, T0 + 5 * MINUTE, contact="chat1", channel="chat", outcome="resolved")
    events += contact(
        T0 + HOUR, T0 + HOUR + 5 * MINUTE, contact="call1", channel="phone", outcome="resolved"
    )
    assert signals_for(events) == []


def test_unresolved_chat_retry_unresolved_then_branch_is_one_failure_from_the_retry():
    events = unresolved_chat()
    events += contact(
        T0 + 10 * MINUTE, T0 + 20 * MINUTE, contact="chat2", channel="chat", outcome="unresolved"
    )
    events += contact(
        T0 + 3 * HOUR, T0 + 4 * HOUR, contact="visit1", channel="branch", outcome="resolved"
    )
    assert signals_for(events) == [("chat2", "visit1", "switch_failure")]


def test_next_contact_just_outside_the_window_is_no_switch_failure():
    events = unresolved_chat()
    events += contact(
        CHAT_END + 24 * HOUR + 1,
        CHAT_END + 25 * HOUR,
        contact="call1",
        channel="phone",
        outcome="resolved",
    )
    assert signals_for(events) == []


def test_next_contact_exactly_at_the_window_edge_is_a_switch_failure():
    events = unresolved_chat()
    events += contact(
        CHAT_END + 24 * HOUR,
        CHAT_END + 25 * HOUR,
        contact="call1",
        channel="phone",
        outcome="resolved",
    )
    assert signals_for(events) == [("chat1", "call1", "switch_failure")]


def test_abandoned_chat_then_branch_is_one_switch_failure():
    events = contact(T0, T0 + 2 * MINUTE, contact="bot1", channel="chat", outcome="abandoned")
    events += contact(
        T0 + 5 * HOUR, T0 + 6 * HOUR, contact="visit1", channel="branch", outcome="resolved"
    )
    assert signals_for(events) == [("bot1", "visit1", "switch_failure")]


def test_switch_failure_counts_in_the_session_holding_the_next_contact():
    events = unresolved_chat()
    events += contact(
        T0 + 10 * MINUTE, T0 + 15 * MINUTE, contact="call1", channel="phone", outcome="resolved"
    )
    out = run(make_processor(), events)
    final = [r for r in out if getattr(r, "status", None) == "final"]
    assert [(s.switch_failures, s.channel_path, s.channel_switches) for s in final] == [
        (1, ["chat", "phone"], 1)
    ]


def test_an_earlier_next_contact_arriving_within_grace_takes_the_pair():
    """The phone call arrives first, the branch visit that started earlier arrives 2 min later."""
    call = contact(
        CHAT_END + 3 * MINUTE,
        CHAT_END + 4 * MINUTE,
        contact="call1",
        channel="phone",
        outcome="unresolved",
    )
    visit = contact(
        CHAT_END + 1 * MINUTE,
        CHAT_END + 30 * MINUTE,
        contact="visit1",
        channel="branch",
        outcome="resolved",
    )
    events = [*unresolved_chat(), call[0], call[1], visit[0], visit[1]]
    # call1 ended after the visit started, so it has no next contact.
    assert signals_for(events) == [("chat1", "visit1", "switch_failure")]


def test_resolved_contact_and_a_return_on_the_same_topic_is_one_false_resolution():
    events = cards_call_resolved()
    events += resolved_web_message("msg1", T0 + 48 * HOUR, topic="cards")
    events += resolved_web_message("msg2", T0 + 72 * HOUR, topic="cards")
    assert signals_for(events) == [
        ("call1", "msg1", "false_resolution"),
        ("msg1", "msg2", "false_resolution"),
    ]


def test_return_on_another_topic_is_no_false_resolution():
    events = cards_call_resolved() + resolved_web_message("msg1", T0 + 48 * HOUR, topic="loans")
    assert signals_for(events) == []
