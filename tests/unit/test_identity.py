"""The identity processor (issue 16): holding, linking, re-attributing, bounds, state."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.event import (
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
    InteractionEvent,
)
from pipeline.contract.validate import validate
from pipeline.core.identity import (
    IdentityOutput,
    IdentityProcessor,
    IdentityRules,
    Release,
    Unattribute,
    anonymous_customer,
)
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import SESSION_FINAL, SessionRecord
from pipeline.errors import ConfigError
from pipeline.settings_loader import build_settings

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
SETTINGS = build_settings()
RULES = IdentityRules.from_settings(SETTINGS.identity)  # 15 min, 200 events, 7 days
PHONE = "+358401234567"


def anonymous(
    n: int, at: int, type_: str = CUSTOMER_MESSAGE, *, actor: str = CUSTOMER, **fields
) -> InteractionEvent:
    """An event the channel knows only by the caller's phone number (or ``fields``)."""
    values = {
        "event_id": f"e{n}",
        "occurred_at": at,
        "customer_id": NO_CUSTOMER,
        "channel": "phone",
        "contact_id": "call-1",
        "type": type_,
        "actor": actor,
        "identifier_kind": "phone",
        "identifier_value": PHONE,
    }
    values.update(fields)
    event = InteractionEvent(**values)
    return validate(event, SETTINGS.channels, identity_events=True)


def identified(n: int, at: int, customer: str, **fields) -> InteractionEvent:
    return dataclasses.replace(
        anonymous(n, at, **fields), customer_id=customer, type=IDENTIFIED, actor=SYSTEM
    )


def unlinked(n: int, at: int, customer: str, **fields) -> InteractionEvent:
    return dataclasses.replace(identified(n, at, customer, **fields), type=UNLINKED)


def run(processor: IdentityProcessor, events: list[InteractionEvent]) -> list[IdentityOutput]:
    out: list[IdentityOutput] = []
    for event in events:
        out.extend(processor.process(event))
    return out


def released(out: list[IdentityOutput]) -> list[tuple[str, str]]:
    return [(o.customer_key, o.event.event_id) for o in out if isinstance(o, Release)]


def unattributed(out: list[IdentityOutput]) -> list[tuple[str, str]]:
    return [(o.customer_key, o.event_id) for o in out if isinstance(o, Unattribute)]


def test_an_anonymous_call_identified_on_the_same_call_is_released_to_the_customer_unchanged():
    processor = IdentityProcessor(RULES)
    call = [
        anonymous(1, T0, CONTACT_STARTED),
        anonymous(2, T0 + 5 * SECOND),
        anonymous(3, T0 + 40 * SECOND, AGENT_REPLY, actor="agent"),
    ]
    assert run(processor, call) == []  # held: nobody knows whose call it is yet
    assert processor.held_now() == 3
    out = processor.process(identified(4, T0 + 60 * SECOND, "cust-1"))
    assert released(out) == [("cust-1", "e1"), ("cust-1", "e2"), ("cust-1", "e3")]
    for original, release in zip(call, out, strict=True):
        assert isinstance(release, Release)
        assert release.event == dataclasses.replace(original, customer_id="cust-1")
    # The rest of the call goes to the customer at once, still in event-time order.
    rest = run(
        processor,
        [anonymous(5, T0 + 3 * MINUTE, CONTACT_ENDED, actor="agent", outcome=RESOLVED)],
    )
    assert released(rest) == [("cust-1", "e5")]
    assert processor.held_now() == 0
    assert (processor.stats.held, processor.stats.released, processor.stats.links) == (3, 4, 1)


def test_the_customers_journey_then_starts_at_the_anonymous_start():
    """The released events, fed to the stream core, give one journey starting at
    the first anonymous event, not at the identification."""
    processor = IdentityProcessor(RULES)
    out = run(
        processor,
        [
            anonymous(1, T0, CONTACT_STARTED),
            anonymous(2, T0 + 5 * SECOND),
            identified(3, T0 + 2 * MINUTE, "cust-1"),
            anonymous(4, T0 + 4 * MINUTE, AGENT_REPLY, actor="agent"),
            anonymous(5, T0 + 6 * MINUTE, CONTACT_ENDED, actor="agent", outcome=RESOLVED),
        ],
    )
    core = PartitionProcessor.from_settings(SETTINGS)
    records = []
    for release in out:
        assert isinstance(release, Release)
        records.extend(core.process(release.event))
    records.extend(core.end_of_input())
    finals = [r for r in records if isinstance(r, SessionRecord) and r.status == SESSION_FINAL]
    assert [(r.customer_id, r.started_at, r.events) for r in finals] == [("cust-1", T0, 4)]


def test_a_chat_identified_after_a_bot_exchange_gives_the_bot_exchange_to_the_customer():
    processor = IdentityProcessor(RULES)
    chat = {"channel": "chat", "contact_id": "chat-9", "identifier_kind": "chat_session"}
    session = {**chat, "identifier_value": "sess-42"}
    bot_exchange = [
        anonymous(1, T0, CONTACT_STARTED, **session),
        anonymous(2, T0 + 10 * SECOND, **session),
        anonymous(3, T0 + 12 * SECOND, AGENT_REPLY, actor=BOT, agent_id="bot-1", **session),
        anonymous(4, T0 + 50 * SECOND, **session),
    ]
    assert run(processor, bot_exchange) == []
    out = processor.process(identified(5, T0 + 2 * MINUTE, "cust-7", **session))
    assert released(out) == [("cust-7", f"e{n}") for n in (1, 2, 3, 4)]
    bot_reply = out[2]
    assert isinstance(bot_reply, Release)
    assert (bot_reply.event.actor, bot_reply.event.occurred_at) == (BOT, T0 + 12 * SECOND)


def test_linked_to_a_then_unlinked_and_linked_to_b_moves_exactly_the_links_events_once():
    processor = IdentityProcessor(RULES)
    before = run(
        processor,
        [
            identified(1, T0, "cust-C", contact_id="call-C"),  # C's call earlier that day
            anonymous(2, T0 + MINUTE, contact_id="call-C"),
            identified(4, T0 + HOUR, "cust-A"),  # a new call; the IVR got it wrong
            anonymous(3, T0 + HOUR + MINUTE),
            anonymous(5, T0 + HOUR + 2 * MINUTE),
        ],
    )
    assert released(before) == [("cust-C", "e2"), ("cust-A", "e3"), ("cust-A", "e5")]
    out = processor.process(unlinked(6, T0 + HOUR + 3 * MINUTE, "cust-A"))
    # A loses everything it got through the wrong link; C keeps its call.
    assert unattributed(out) == [("cust-A", "e3"), ("cust-A", "e5")]
    assert released(out) == []  # nobody is known: held again
    assert processor.held_now() == 2
    out += processor.process(identified(7, T0 + HOUR + 4 * MINUTE, "cust-B"))
    assert released(out) == [("cust-B", "e3"), ("cust-B", "e5")]
    later = processor.process(anonymous(8, T0 + HOUR + 5 * MINUTE))
    assert released(later) == [("cust-B", "e8")]
    # Nothing twice: each event is, net, with exactly one customer.
    assert net_attribution(before + out + later) == {
        "e2": "cust-C",
        "e3": "cust-B",
        "e5": "cust-B",
        "e8": "cust-B",
    }
    assert (processor.stats.unlinks, processor.stats.unattributed) == (1, 2)


def test_an_identified_that_moves_the_identifier_takes_back_only_the_calls_after_it():
    processor = IdentityProcessor(RULES)
    first = run(
        processor,
        [
            identified(1, T0, "cust-A"),
            anonymous(2, T0 + MINUTE, contact_id="call-1"),
            anonymous(3, T0 + 10 * MINUTE, contact_id="call-2"),
        ],
    )
    out = processor.process(identified(4, T0 + 5 * MINUTE, "cust-B"))  # arrives late
    assert unattributed(out) == [("cust-A", "e3")]
    assert released(out) == [("cust-B", "e3")]
    assert net_attribution(first + out) == {"e2": "cust-A", "e3": "cust-B"}


def test_a_call_identified_as_another_customer_during_it_is_that_customer_s_from_its_start():
    """The number was A's (an earlier link); during the call the IVR identifies the
    caller as B (the identification arrives late). The call is not split: all of
    it goes to B, the customer of the link in force at its latest event."""
    processor = IdentityProcessor(RULES)
    first = run(
        processor,
        [identified(1, T0, "cust-A"), anonymous(2, T0 + MINUTE), anonymous(3, T0 + 10 * MINUTE)],
    )
    out = processor.process(identified(4, T0 + 5 * MINUTE, "cust-B"))
    assert unattributed(out) == [("cust-A", "e2"), ("cust-A", "e3")]
    assert released(out) == [("cust-B", "e2"), ("cust-B", "e3")]
    assert net_attribution(first + out) == {"e2": "cust-B", "e3": "cust-B"}


def test_an_event_after_the_identifier_passed_to_another_customer_moves_its_whole_call():
    """In input order: the call's first event is A's (A's link), the number passes to
    B, then the call's next event comes: the whole call moves to B, its first event
    taken back from A, so no contact has rows under two customers."""
    processor = IdentityProcessor(RULES)
    first = run(
        processor,
        [
            identified(1, T0, "cust-A"),
            anonymous(2, T0 + MINUTE),
            identified(3, T0 + 5 * MINUTE, "cust-B", contact_id="call-9"),
        ],
    )
    assert released(first) == [("cust-A", "e2")]
    out = processor.process(anonymous(4, T0 + 10 * MINUTE))
    assert unattributed(out) == [("cust-A", "e2")]
    assert released(out) == [("cust-B", "e2"), ("cust-B", "e4")]
    assert net_attribution(first + out) == {"e2": "cust-B", "e4": "cust-B"}


def test_events_held_past_the_hold_are_released_as_the_anonymous_customer_and_counted():
    processor = IdentityProcessor(RULES)
    run(processor, [anonymous(1, T0, CONTACT_STARTED), anonymous(2, T0 + 10 * MINUTE)])
    assert processor.advance(T0 + 15 * MINUTE - 1) == []
    out = processor.advance(T0 + 15 * MINUTE)
    anon = anonymous_customer("phone", PHONE, None)
    assert released(out) == [(anon, "e1"), (anon, "e2")]
    assert re.fullmatch(r"anon:phone:[0-9a-f]{32}", anon)
    assert PHONE not in anon
    assert processor.stats.expired_hold == 2
    assert processor.held_now() == 0


def test_an_event_of_a_later_call_starts_a_new_hold_after_an_expiry():
    processor = IdentityProcessor(RULES)
    run(processor, [anonymous(1, T0)])
    out = run(processor, [anonymous(2, T0 + HOUR)])  # the clock passes e1's hold first
    assert released(out) == [(anonymous_customer("phone", PHONE, None), "e1")]
    assert processor.held_now() == 1


def test_more_events_than_max_held_are_released_as_anonymous_and_counted():
    processor = IdentityProcessor(dataclasses.replace(RULES, max_held=3))
    out = run(processor, [anonymous(n, T0 + n * SECOND) for n in range(1, 4)])
    assert out == []
    out = processor.process(anonymous(4, T0 + 4 * SECOND))
    anon = anonymous_customer("phone", PHONE, None)
    assert released(out) == [(anon, f"e{n}") for n in range(1, 5)]
    assert (processor.stats.expired_max_held, processor.stats.expired_hold) == (4, 0)


def test_the_anonymous_customer_is_a_keyed_hash_when_a_pseudonym_key_is_given():
    keyed = anonymous_customer("phone", PHONE, b"secret")
    assert keyed != anonymous_customer("phone", PHONE, None)
    assert keyed == anonymous_customer("phone", PHONE, b"secret")
    assert keyed != anonymous_customer("phone", PHONE, b"other")
    assert keyed.startswith("anon:phone:")


def test_a_late_identification_takes_the_anonymous_events_back():
    processor = IdentityProcessor(RULES)
    run(processor, [anonymous(1, T0)])
    expired = processor.advance(T0 + 20 * MINUTE)
    anon = anonymous_customer("phone", PHONE, None)
    out = processor.process(identified(2, T0 + 25 * MINUTE, "cust-1"))
    assert unattributed(out) == [(anon, "e1")]
    assert released(out) == [("cust-1", "e1")]
    assert net_attribution(expired + out) == {"e1": "cust-1"}


def test_an_identifier_reused_by_two_customers_gives_each_period_to_its_customer():
    processor = IdentityProcessor(RULES)
    out = run(
        processor,
        [
            identified(1, T0, "cust-A"),
            anonymous(2, T0 + MINUTE),
            identified(3, T0 + 2 * HOUR, "cust-B", contact_id="call-2"),  # the number went to B
            anonymous(4, T0 + 2 * HOUR + MINUTE, contact_id="call-2"),
            anonymous(5, T0 + 30 * MINUTE),  # arrives late, from A's period (A's call)
        ],
    )
    assert released(out) == [("cust-A", "e2"), ("cust-B", "e4"), ("cust-A", "e5")]
    assert unattributed(out) == []


def test_an_unlinked_for_a_customer_without_a_link_changes_nothing_and_is_counted():
    processor = IdentityProcessor(RULES)
    run(processor, [identified(1, T0, "cust-A"), anonymous(2, T0 + MINUTE)])
    assert processor.process(unlinked(3, T0 + 2 * MINUTE, "cust-B")) == []
    assert processor.stats.unlinks_unmatched == 1


def test_a_redelivered_event_or_identification_is_ignored():
    processor = IdentityProcessor(RULES)
    run(processor, [anonymous(1, T0), identified(2, T0 + MINUTE, "cust-1")])
    assert run(processor, [anonymous(1, T0), identified(2, T0 + MINUTE, "cust-1")]) == []
    assert processor.stats.duplicates == 2


def test_an_event_with_a_customer_is_refused_as_a_routing_error():
    processor = IdentityProcessor(RULES)
    with pytest.raises(ValueError, match="not an identity event"):
        processor.process(dataclasses.replace(anonymous(1, T0), customer_id="cust-1"))


def test_a_state_round_trip_in_the_middle_of_a_hold_gives_the_same_outputs():
    script = [
        anonymous(1, T0, CONTACT_STARTED),
        anonymous(2, T0 + 5 * SECOND),
        identified(3, T0 + MINUTE, "cust-A"),
        anonymous(4, T0 + 2 * MINUTE),
        unlinked(5, T0 + 3 * MINUTE, "cust-A"),
        anonymous(6, T0 + 4 * MINUTE),
        identified(7, T0 + 6 * MINUTE, "cust-B"),
        anonymous(8, T0 + 40 * MINUTE, contact_id="call-2"),
    ]
    for cut in range(len(script) + 1):
        whole = IdentityProcessor(RULES)
        expected = run(whole, script) + whole.advance(T0 + 2 * HOUR)
        first = IdentityProcessor(RULES)
        got = run(first, script[:cut])
        saved = json.loads(json.dumps(first.to_state()))
        restored = IdentityProcessor.from_state(RULES, saved)
        got += run(restored, script[cut:]) + restored.advance(T0 + 2 * HOUR)
        assert got == expected, f"cut after {cut} events"
        assert restored.to_state() == whole.to_state()


def test_the_changed_identifiers_are_handed_out_as_json_states_and_restore_one_by_one():
    processor = IdentityProcessor(RULES)
    run(processor, [anonymous(1, T0), identified(2, T0 + MINUTE, "cust-1")])
    dirty = processor.take_dirty()
    assert list(dirty) == [f"phone:{PHONE}"]
    assert processor.take_dirty() == {}
    restored = IdentityProcessor(RULES)
    for key, state in dirty.items():
        assert state is not None
        restored.load_state(key, json.loads(json.dumps(state)))
    restored.load_clock(T0 + MINUTE)
    assert restored.process(anonymous(3, T0 + 2 * MINUTE)) == processor.process(
        anonymous(3, T0 + 2 * MINUTE)
    )


def test_a_state_of_another_version_is_refused():
    state = IdentityProcessor(RULES).to_state()
    with pytest.raises(ValueError, match="version"):
        IdentityProcessor.from_state(RULES, {**state, "v": 99})


def test_released_events_are_forgotten_after_the_unlink_window_and_the_identifier_with_them():
    rules = dataclasses.replace(RULES, unlink_window_ms=HOUR)
    processor = IdentityProcessor(rules)
    run(processor, [anonymous(1, T0)])
    processor.advance(T0 + 15 * MINUTE)  # released as anonymous, kept for an hour
    processor.take_dirty()
    processor.advance(T0 + HOUR + 1)
    assert processor.take_dirty() == {f"phone:{PHONE}": None}
    assert processor.stats.identifiers_evicted == 1


def test_end_of_input_releases_what_is_still_held_as_anonymous():
    processor = IdentityProcessor(RULES)
    run(processor, [anonymous(1, T0)])
    out = processor.end_of_input()
    assert released(out) == [(anonymous_customer("phone", PHONE, None), "e1")]
    assert processor.stats.expired_at_end == 1


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        ({"hold": "35m"}, "must be at most session.gap_minutes"),
        ({"hold": "31m"}, "must be at most session.gap_minutes"),
        ({"hold": "0s"}, "identity.hold must be positive"),
        ({"max_held": 0}, "identity.max_held"),
        ({"unlink_window": "soon"}, "not a duration"),
    ],
)
def test_identity_settings_that_would_make_released_events_late_or_make_no_sense_are_refused(
    identity, message
):
    with pytest.raises(ConfigError, match=message):
        build_settings({"identity": identity})


def test_a_hold_must_also_fit_a_shorter_session_gap():
    with pytest.raises(ConfigError, match="must be at most"):
        build_settings({"session": {"gap_minutes": 10, "grace_minutes": 2}})
    assert (
        build_settings(
            {"session": {"gap_minutes": 10, "grace_minutes": 2}, "identity": {"hold": "5m"}}
        ).identity.hold_seconds
        == 300.0
    )


# -- properties -----------------------------------------------------------------------


def net_attribution(out: list[IdentityOutput]) -> dict[str, str]:
    """event_id -> the customer it is with after ``out``; asserts nothing happens twice."""
    holder: dict[str, str] = {}
    for output in out:
        if isinstance(output, Release):
            event_id = output.event.event_id
            assert event_id not in holder, f"{event_id} released twice"
            assert output.event.customer_id == output.customer_key
            holder[event_id] = output.customer_key
        else:
            assert holder.get(output.event_id) == output.customer_key, output
            del holder[output.event_id]
    return holder


_STEP = st.tuples(
    st.sampled_from(["event", "event", "event", IDENTIFIED, UNLINKED]),
    st.integers(0, 90),  # minutes after T0
    st.sampled_from(["cust-A", "cust-B", "cust-C"]),
    st.sampled_from(["+3581", "+3582"]),
)


def _script(steps) -> list[InteractionEvent]:
    events = []
    for n, (kind, minute, customer, phone) in enumerate(steps):
        at = T0 + minute * MINUTE
        if kind == "event":
            events.append(anonymous(n, at, identifier_value=phone))
        elif kind == IDENTIFIED:
            events.append(identified(n, at, customer, identifier_value=phone))
        else:
            events.append(unlinked(n, at, customer, identifier_value=phone))
    return events


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_STEP, max_size=30), cut=st.integers(0, 30))
def test_every_event_ends_with_exactly_one_customer_and_a_restart_changes_nothing(steps, cut):
    script = _script(steps)
    rules = dataclasses.replace(RULES, max_held=4)
    whole = IdentityProcessor(rules)
    out = run(whole, script) + whole.end_of_input()
    holder = net_attribution(out)
    ordinary = {e.event_id for e in script if e.type == CUSTOMER_MESSAGE}
    assert set(holder) == ordinary
    first = IdentityProcessor(rules)
    again = run(first, script[:cut])
    restored = IdentityProcessor.from_state(rules, json.loads(json.dumps(first.to_state())))
    again += run(restored, script[cut:]) + restored.end_of_input()
    assert again == out


def test_an_unlink_also_takes_back_the_held_events_the_wrong_identification_claimed():
    processor = IdentityProcessor(RULES)
    out = run(
        processor,
        [
            anonymous(1, T0, CONTACT_STARTED),
            anonymous(2, T0 + 10 * SECOND),
            identified(3, T0 + MINUTE, "cust-A"),
            unlinked(4, T0 + 2 * MINUTE, "cust-A"),
            identified(5, T0 + 3 * MINUTE, "cust-B"),
        ],
    )
    assert unattributed(out) == [("cust-A", "e1"), ("cust-A", "e2")]
    assert net_attribution(out) == {"e1": "cust-B", "e2": "cust-B"}
