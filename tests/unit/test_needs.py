"""Needs (cases) and bouncing (issue 15, parts 1 and 2), through the stream core.

A need is a customer's contacts on one need_id (else topic) within the need window
(7 days after its last contact, exactly 7 days still joins); bouncing is 3 contacts
over 2 channels before a contact of the need ended resolved.
"""

from __future__ import annotations

import json
from dataclasses import replace

from pipeline.core.records import JourneySignal, NeedRecord
from pipeline.replay import collapse
from tests.unit.core_standins import HOUR, MINUTE, T0, contact, ev, make_processor, run

DAY = 24 * HOUR
WINDOW = 7 * DAY
GRACE = 5 * MINUTE


def _call(start: int, cid: str, channel: str, outcome: str = "unresolved", topic: str = "card"):
    return contact(
        start, start + 10 * MINUTE, contact=cid, channel=channel, outcome=outcome, topic=topic
    )


def _needs(out: list) -> dict[str, dict]:
    return collapse(out).get("need", {})


def _bounces(out: list) -> list[JourneySignal]:
    return [r for r in out if isinstance(r, JourneySignal) and r.kind == "bounced"]


def test_a_contact_exactly_one_window_after_the_last_joins_the_need():
    processor = make_processor()
    events = _call(T0, "p1", "phone") + _call(T0 + 10 * MINUTE + WINDOW, "c2", "chat")
    needs = _needs(run(processor, events))

    assert [(n["contact_ids"], n["channels"]) for n in needs.values()] == [
        (["p1", "c2"], ["phone", "chat"])
    ]


def test_a_contact_one_millisecond_after_the_window_opens_a_new_need():
    processor = make_processor()
    late = T0 + 10 * MINUTE + WINDOW + 1
    events = _call(T0, "p1", "phone") + _call(late, "c2", "chat")
    needs = _needs(run(processor, events))

    assert sorted((n["need_id"], n["contact_ids"], n["status"]) for n in needs.values()) == [
        (f"c1:card:{T0}", ["p1"], "final"),
        (f"c1:card:{late}", ["c2"], "final"),
    ]


def test_a_need_closes_by_its_timer_once_the_clock_passes_window_plus_grace():
    processor = make_processor()
    out = run(processor, _call(T0, "p1", "phone"), finish=False)
    due = T0 + 10 * MINUTE + WINDOW + GRACE + 1
    assert [r for r in processor.advance(due - 1) if isinstance(r, NeedRecord)] == []
    closed = [r for r in processor.advance(due) if isinstance(r, NeedRecord)]
    opened = [r for r in out if isinstance(r, NeedRecord)]

    assert [(r.status, r.version) for r in opened] == [("open", 1)]
    assert [(r.status, r.closed_at, r.version, r.contacts) for r in closed] == [
        ("final", due, 2, 1)
    ]


def test_a_need_spans_two_journeys_a_day_apart():
    processor = make_processor()
    out = run(processor, _call(T0, "p1", "phone") + _call(T0 + DAY, "c2", "chat"))
    sessions = collapse(out)["session"]
    (need,) = _needs(out).values()

    assert len(sessions) == 2
    assert (need["contacts"], need["channels"], need["channel_switches"]) == (
        2,
        ["phone", "chat"],
        1,
    )
    assert (need["opened_at"], need["last_contact_at"]) == (T0, T0 + DAY + 10 * MINUTE)


def test_resolution_then_repeat_stays_one_need_not_first_contact_resolved():
    processor = make_processor()
    events = _call(T0, "p1", "phone", "resolved") + _call(T0 + 2 * DAY, "p2", "phone", "resolved")
    (need,) = _needs(run(processor, events)).values()

    assert (need["contacts"], need["first_contact_resolved"], need["resolved"]) == (2, False, True)


def test_a_single_resolved_contact_is_a_first_contact_resolved_need_when_it_closes():
    """The repeat window and the need window end at the same millisecond; the FCR
    decision is made first, so the final need carries it."""
    processor = make_processor()
    out = run(processor, _call(T0, "p1", "phone", "resolved"), finish=False)
    out += processor.advance(T0 + 10 * MINUTE + WINDOW + GRACE + 1)
    (need,) = _needs(out).values()

    assert (need["status"], need["contacts"], need["first_contact_resolved"], need["resolved"]) == (
        "final",
        1,
        True,
        True,
    )


def test_at_end_of_input_a_need_whose_repeat_window_is_still_open_is_undecided():
    processor = make_processor()
    (need,) = _needs(run(processor, _call(T0, "p1", "phone", "resolved"))).values()

    assert (need["status"], need["first_contact_resolved"]) == ("final", None)


def test_contacts_on_other_topics_are_other_needs_and_no_topic_is_no_need():
    processor = make_processor()
    events = (
        _call(T0, "p1", "phone")
        + _call(T0 + HOUR, "p2", "phone", topic="loan")
        + contact(
            T0 + 2 * HOUR, T0 + 2 * HOUR + MINUTE, contact="x", channel="chat", outcome="resolved"
        )
    )
    needs = _needs(run(processor, events))

    assert sorted((n["topic"], n["contact_ids"]) for n in needs.values()) == [
        ("card", ["p1"]),
        ("loan", ["p2"]),
    ]


def test_an_explicit_need_id_groups_contacts_across_topics_and_sums_handling_time():
    processor = make_processor()
    first = [replace(e, need_id="case-9", handling_seconds=120.0) for e in _call(T0, "p1", "phone")]
    second = [
        replace(e, need_id="case-9", handling_seconds=30.5)
        for e in _call(T0 + HOUR, "c2", "chat", topic="loan")
    ]
    (need,) = _needs(run(processor, first + second)).values()

    assert (need["need_id"], need["topic"], need["contacts"], need["handling_seconds"]) == (
        "case-9",
        "card",
        2,
        301.0,
    )


def test_two_contacts_over_two_channels_do_not_bounce():
    processor = make_processor()
    out = run(processor, _call(T0, "c1", "chat") + _call(T0 + HOUR, "p2", "phone"))

    assert _bounces(out) == []
    assert [n["bounced"] for n in _needs(out).values()] == [False]


def test_three_contacts_on_one_channel_do_not_bounce():
    processor = make_processor()
    events = (
        _call(T0, "p1", "phone") + _call(T0 + HOUR, "p2", "phone") + _call(T0 + DAY, "p3", "phone")
    )
    out = run(processor, events)

    assert _bounces(out) == []


def test_three_contacts_over_two_channels_bounce_signalled_a_grace_after_the_third_contact():
    """The bounce is decided when the clock passes the crossing contact's start plus
    the grace, as a switch failure is: by then every event dated before that start
    has come (or is late), so arrival order cannot decide it."""
    processor = make_processor()
    out = run(processor, _call(T0, "c1", "chat") + _call(T0 + HOUR, "p2", "phone"), finish=False)
    third = _call(T0 + DAY, "c3", "chat")
    at_third_start = processor.process(third[0])
    before_grace = processor.advance(T0 + DAY + GRACE)
    after_grace = processor.advance(T0 + DAY + GRACE + 1)
    rest = run(processor, third[1:])

    assert _bounces(out + at_third_start + before_grace) == []
    (signal,) = _bounces(after_grace)
    assert (signal.signal_id, signal.from_contact_id, signal.to_contact_id, signal.occurred_at) == (
        f"c1:card:{T0}:bounced",
        "c1",
        "c3",
        T0 + DAY,
    )
    assert (signal.from_channel, signal.to_channel, signal.gap_seconds) == ("chat", "chat", 86400.0)
    assert signal.from_outcome == "unresolved"
    assert _bounces(rest) == []
    (need,) = _needs(out + at_third_start + after_grace + rest).values()
    assert (need["bounced"], need["bounced_at"], need["first_channel"], need["status"]) == (
        True,
        T0 + DAY,
        "chat",
        "final",
    )


def test_a_resolution_dated_before_the_third_contact_that_arrives_after_it_stops_the_bounce():
    """The second contact's end (resolved) is dated before the third contact starts
    but arrives after it, within the grace (as an event identity releases does): the
    need did not bounce, as in event-time order."""
    second = _call(T0 + 20 * MINUTE, "p2", "phone", "resolved")  # ends at T0 + 30 min
    third = _call(T0 + 33 * MINUTE, "c3", "chat")
    in_order = run(make_processor(), _call(T0, "c1", "chat") + second + third)
    first_and_second_start = _call(T0, "c1", "chat") + second[:1]
    end_later = run(make_processor(), first_and_second_start + third[:1] + second[1:] + third[1:])

    assert _bounces(in_order) == _bounces(end_later) == []
    assert [n["bounced"] for n in _needs(end_later).values()] == [False]


def test_a_need_resolved_before_the_third_contact_does_not_bounce():
    processor = make_processor()
    events = (
        _call(T0, "c1", "chat")
        + _call(T0 + HOUR, "p2", "phone", "resolved")
        + _call(T0 + DAY, "c3", "chat")
    )
    out = run(processor, events)

    assert _bounces(out) == []
    (need,) = _needs(out).values()
    assert (need["contacts"], need["bounced"], need["resolved"]) == (3, False, False)


def test_feedback_about_a_contact_of_the_need_counts_in_its_average():
    processor = make_processor()
    events = [
        *_call(T0, "p1", "phone"),
        ev(T0 + 20 * MINUTE, contact="p1", channel="phone", type="feedback", score=4),
        *_call(T0 + HOUR, "p2", "phone"),
        ev(T0 + 2 * HOUR, contact="p2", channel="phone", type="feedback", score=9),
    ]
    (need,) = _needs(run(processor, events)).values()

    assert (need["feedback_count"], need["feedback_average"]) == (2, 6.5)


def test_open_needs_survive_a_state_round_trip_and_bounce_as_without_it():
    events = (
        _call(T0, "c1", "chat") + _call(T0 + HOUR, "p2", "phone") + _call(T0 + DAY, "c3", "chat")
    )
    straight = run(make_processor(), events)

    first = make_processor()
    before = run(first, events[:4], finish=False)
    saved = first.take_dirty()
    second = make_processor()
    for customer_id, data in saved.items():
        assert data is not None
        assert json.loads(data)["n"][0][1] == f"c1:card:{T0}"
        second.load_state(customer_id, data)
    second.load_clock(first.clock_ms or 0)
    after = run(second, events[4:])

    assert collapse(before + after)["need"] == collapse(straight)["need"]
    assert len(_bounces(after)) == 1


def test_a_state_written_before_needs_still_loads():
    first = make_processor()
    run(first, _call(T0, "p1", "phone"), finish=False)
    saved = first.take_dirty()
    second = make_processor()
    for customer_id, data in saved.items():
        assert data is not None
        state = json.loads(data)
        del state["n"]
        second.load_state(customer_id, json.dumps(state).encode())
    out = run(second, _call(T0 + HOUR, "p2", "phone"))

    assert [n["contact_ids"] for n in _needs(out).values()] == [["p2"]]


def test_the_simulator_bounces_needs_over_days_when_asked_and_not_by_default():
    from pipeline.replay import replay_events
    from pipeline.settings_loader import build_settings
    from pipeline.tools.simulator import DEFAULT_JOURNEY_WEIGHTS, SimulatorConfig, generate

    def needs(config: SimulatorConfig) -> list[dict]:
        events = [item.event for item in generate(config) if item.event is not None]
        return list(collapse(replay_events(events, build_settings()).records)["need"].values())

    asked = needs(
        SimulatorConfig(
            customers=30,
            count=1500,
            seed=3,
            arrival_rate_per_hour=1.0,
            journey_weights={**DEFAULT_JOURNEY_WEIGHTS, "bounced_over_days": 1.0},
        )
    )
    spanning = [n for n in asked if n["bounced"] and n["last_contact_at"] - n["opened_at"] > DAY]
    assert len(spanning) >= 3
    assert ("chat", "chat", "phone") in {tuple(n["channels"]) for n in spanning}
    assert DEFAULT_JOURNEY_WEIGHTS["bounced_over_days"] == 0.0


def test_a_need_is_named_after_its_earliest_contact_whatever_arrived_first():
    """The second contact's events arrive first (within the grace): the need it
    opened is renamed when the earlier contact joins, and the open record sent under
    the first name is retracted, so the standing needs equal in-order delivery's."""
    first, second = _call(T0, "p1", "phone"), _call(T0 + 12 * MINUTE, "c2", "chat")
    in_order = _needs(run(make_processor(), first + second))
    reversed_order = _needs(run(make_processor(), second + first))

    standing = {k: v for k, v in reversed_order.items() if v["status"] != "retracted"}

    def strip(needs):
        return {k: {f: v for f, v in n.items() if f != "version"} for k, n in needs.items()}

    assert list(in_order) == [f"c1:card:{T0}"]
    assert strip(standing) == strip(in_order)
    assert [k for k, v in reversed_order.items() if v["status"] == "retracted"] == [
        f"c1:card:{T0 + 12 * MINUTE}"
    ]
