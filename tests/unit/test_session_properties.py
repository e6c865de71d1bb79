"""Property-based tests: results depend only on event time within the grace,
and never on where the clock is advanced between events."""

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.event import CONTACT_ENDED, FEEDBACK
from pipeline.replay import collapse
from tests.unit.core_standins import MINUTE, T0, StandInPolicy, ev, make_processor, run

GRACE = 5 * MINUTE
CHANNELS = ("chat", "phone", "branch")

steps = st.lists(
    st.tuples(
        st.integers(0, 2),  # customer
        st.integers(0, 50),  # minutes since the previous event (any customer)
        st.sampled_from(["message", "end_ok", "end_bad", "new_contact", "feedback"]),
        st.integers(0, GRACE - 1),  # arrival delay, less than the grace
    ),
    min_size=1,
    max_size=40,
)


def build(raw):
    """(event, arrival time) pairs in event-time order."""
    at = T0
    contact_no = [0, 0, 0]
    pairs = []
    for index, (customer, minutes, kind, delay) in enumerate(raw):
        at += minutes * MINUTE
        if kind == "new_contact":
            contact_no[customer] += 1
        contact_id = f"c{customer}-k{contact_no[customer]}"
        channel = CHANNELS[contact_no[customer] % len(CHANNELS)]
        fields = {
            "customer": f"c{customer}",
            "contact": contact_id,
            "channel": channel,
            "event_id": f"e{index}",
        }
        if kind.startswith("end"):
            event = ev(
                at,
                type=CONTACT_ENDED,
                actor="system",
                outcome="resolved" if kind == "end_ok" else "unresolved",
                **fields,
            )
        elif kind == "feedback":
            event = ev(at, type=FEEDBACK, score=index % 11, **fields)
        else:
            event = ev(at, **fields)
        pairs.append((event, at + delay))
    return pairs


def final_sessions(records):
    """Final sessions without the arrival-dependent id, version and correction flag
    (a journey corrected after it closed says so: whether it was depends on when
    the correcting event arrived, not on what the journey holds)."""
    finals = [
        {k: v for k, v in record.items() if k not in ("session_id", "version", "correction")}
        for record in collapse(records)["session"].values()
        if record["status"] == "final"
    ]
    return sorted(finals, key=lambda s: (s["customer_id"], s["started_at"]))


# The examples are drawn the same way in every run (derandomize), so CI never
# passes or fails by chance (a random draw found the defect pinned below).
@settings(max_examples=150, deadline=None, derandomize=True)
@given(steps)
def test_arrival_displaced_by_less_than_the_grace_gives_the_same_final_sessions(raw):
    pairs = build(raw)
    in_order = [event for event, _ in pairs]
    shuffled = [event for event, _ in sorted(pairs, key=lambda p: p[1])]
    expected = final_sessions(run(make_processor(), in_order))
    assert final_sessions(run(make_processor(), shuffled)) == expected


@settings(max_examples=150, deadline=None)
@given(steps, st.lists(st.tuples(st.integers(0, 40), st.floats(0, 1)), max_size=10))
def test_where_advance_is_called_between_events_does_not_change_results(raw, advances):
    policies = (
        StandInPolicy("chat_fr", "chat", 7 * MINUTE),
        StandInPolicy("phone_fr", "phone", 20 * MINUTE),
    )
    events = [event for event, _ in build(raw)]
    expected = collapse(run(make_processor(policies), events))

    processor = make_processor(policies)
    at_index = {}
    for position, share in advances:
        at_index.setdefault(position, []).append(share)
    out = []
    for index, event in enumerate(events):
        for share in sorted(at_index.get(index, [])):
            clock = processor.clock_ms if processor.clock_ms is not None else event.occurred_at
            # Any clock up to the next event's time: the stream would reach it anyway.
            out.extend(processor.advance(clock + int(share * (event.occurred_at - clock))))
        out.extend(processor.process(event))
    out.extend(processor.end_of_input())
    assert collapse(out) == expected


def test_an_end_that_arrives_after_another_customer_moved_the_clock_still_resolves_its_journey():
    # c1's chat journey closes at T0 + 35 min when c0's event moves the clock to
    # T0 + 36; c1's end dated T0 + 33 arrives after it (3 min late, inside the
    # grace) and corrects the closed journey, as in order it would have closed.
    raw = [
        (1, 0, "message", 0),
        (0, 5, "message", 0),
        (1, 28, "end_ok", 180001),
        (0, 3, "message", 0),
    ]
    pairs = build(raw)
    in_order = [event for event, _ in pairs]
    shuffled = [event for event, _ in sorted(pairs, key=lambda p: p[1])]

    records = run(make_processor(), shuffled)
    assert final_sessions(records) == final_sessions(run(make_processor(), in_order))
    [journey] = [s for s in collapse(records)["session"].values() if s["contact_ids"] == ["c1-k0"]]
    assert (journey["started_at"], journey["resolved_at_end"]) == (T0, True)
    assert journey["first_outcome_resolved"] is True
    assert (journey["version"], journey["correction"]) == (2, True)
