"""The persisted customer state: version 3 round-trips, versions 1 and 2 are still read."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from pipeline.core.customer import CustomerState
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import (
    BOUNCED,
    ContactSummary,
    JourneySignal,
    NeedRecord,
    OutputRecord,
    SessionRecord,
)
from pipeline.core.state_codec import STATE_VERSION
from pipeline.errors import CxstreamError
from pipeline.settings_loader import build_settings
from pipeline.tools.bench import simulated_events
from tests.unit.test_core_golden import RICH_POLICIES

EVENTS = 6_000


def _v1_state(customer: CustomerState) -> dict[str, Any]:
    """The state as version 1 wrote it (the SLA as ContactSla.to_state(), id pairs)."""
    return {
        "v": 1,
        "b": customer.book.to_state(),
        "k": [
            [
                c.contact_id,
                c.channel,
                c.started_at,
                c.ended_at,
                c.outcome,
                c.topic,
                c.events,
                c.last_at,
                c.session_id,
                c.sla.to_state(),
                c.sla_since,
                c.switched_into,
            ]
            for c in customer.contacts.values()
        ],
        "w": [[key, c.to_state()] for key, c in customer.candidates.items()],
        "d": [[event_id, at] for event_id, at in customer.dedup._seen.items()],
    }


def _run(processor: PartitionProcessor, events: Any) -> list[OutputRecord]:
    out: list[OutputRecord] = []
    for event in events:
        out.extend(processor.process(event))
    return out


def _restored(
    first: PartitionProcessor, states: dict[str, bytes], settings: Any
) -> PartitionProcessor:
    processor = PartitionProcessor.from_settings(settings)
    assert first.clock_ms is not None
    processor.load_clock(first.clock_ms)
    for customer_id, data in states.items():
        processor.load_state(customer_id, data)
    return processor


def _v2_state(customer: CustomerState) -> dict[str, Any]:
    """The state as version 2 wrote it (no summary counts, no final journeys kept)."""
    state = customer.to_state()
    return {
        "v": 2,
        "b": state["b"],
        "k": [row[:12] for row in state["k"]],
        "w": state["w"],
        "d": state["d"],
    }


def _not_versioned(records: list[OutputRecord]) -> list[OutputRecord]:
    """What versions 1 and 2 knew enough to restore: all but contact summaries (their
    counts), corrections of journeys that closed before the restart, and a journey's
    FCR by need (the repeat checks of contacts were not stored: rows of 12 fields), and
    needs (open needs were not stored, so neither their records nor bounce signals)."""
    return [
        replace(r, first_contact_resolved=False, fcr_undecided=False)
        if isinstance(r, SessionRecord)
        else r
        for r in records
        if not isinstance(r, ContactSummary | NeedRecord)
        and not (isinstance(r, SessionRecord) and r.correction)
        and not (isinstance(r, JourneySignal) and r.kind == BOUNCED)
    ]


def test_a_version_3_state_restores_to_the_same_outputs_as_no_restart():
    settings = build_settings(RICH_POLICIES)
    events = simulated_events(EVENTS, seed=23)
    cut = EVENTS // 2
    uninterrupted = PartitionProcessor.from_settings(settings)
    expected = _run(uninterrupted, events) + uninterrupted.end_of_input()

    first = PartitionProcessor.from_settings(settings)
    before = _run(first, events[:cut])
    v3 = {k: v for k, v in first.take_dirty().items() if v is not None}
    restored = _restored(first, v3, settings)
    assert {c: restored._customers[c].to_state() for c in v3} == {
        c: json.loads(data) for c, data in v3.items()
    }
    assert before + _run(restored, events[cut:]) + restored.end_of_input() == expected


def test_version_1_and_version_2_states_restore_to_the_same_outputs_as_no_restart():
    """Apart from what they did not store: summary versions and journey corrections."""
    settings = build_settings(RICH_POLICIES)
    events = simulated_events(EVENTS, seed=23)
    cut = EVENTS // 2
    uninterrupted = PartitionProcessor.from_settings(settings)
    expected = _run(uninterrupted, events) + uninterrupted.end_of_input()

    first = PartitionProcessor.from_settings(settings)
    before = _run(first, events[:cut])
    first.take_dirty()
    v2 = {c: json.dumps(_v2_state(customer)).encode() for c, customer in first._customers.items()}
    v1 = {
        customer_id: json.dumps(_v1_state(customer)).encode()
        for customer_id, customer in first._customers.items()
    }
    from_v1 = _restored(first, v1, settings)
    from_v2 = _restored(first, v2, settings)
    assert {c: from_v1._customers[c].to_state() for c in v1} == {
        c: from_v2._customers[c].to_state() for c in v2
    }
    after_v1 = _run(from_v1, events[cut:]) + from_v1.end_of_input()
    after_v2 = _run(from_v2, events[cut:]) + from_v2.end_of_input()
    assert after_v1 == after_v2
    assert _not_versioned(before + after_v2) == _not_versioned(expected)


def test_state_names_its_version():
    processor = PartitionProcessor.from_settings(build_settings())
    _run(processor, simulated_events(50, seed=11))
    versions = {json.loads(data)["v"] for data in processor.take_dirty().values() if data}
    assert versions == {STATE_VERSION}


def test_a_state_of_an_unknown_version_is_refused():
    processor = PartitionProcessor.from_settings(build_settings())
    with pytest.raises(CxstreamError, match="customer state version 4 is not known"):
        processor.load_state("c1", b'{"v":4}')


def test_a_journey_is_named_after_its_earliest_event_whatever_arrived_first():
    """The second contact's events arrive first (within the grace) and an open
    update names the journey after them: when the earlier contact comes, the journey
    is renamed after its earliest event, the old name is superseded by the new, and
    the contact rows name the new journey, as in-order delivery does."""
    from pipeline.replay import collapse
    from tests.unit.core_standins import MINUTE, T0, contact, make_processor, run

    first = contact(T0, T0 + 10 * MINUTE, contact="p1", channel="phone", outcome="resolved")
    second = contact(
        T0 + 12 * MINUTE, T0 + 20 * MINUTE, contact="c2", channel="chat", outcome="resolved"
    )
    in_order = collapse(run(make_processor(), first + second))
    processor = make_processor()
    out = run(processor, second[:1], finish=False)
    out += processor.flush_updates()
    out += run(processor, second[1:] + first)
    reversed_order = collapse(out)

    finals = lambda c: {k: v for k, v in c["session"].items() if v["status"] != "superseded"}  # noqa: E731
    assert list(finals(reversed_order)) == list(finals(in_order))
    superseded = [v for v in reversed_order["session"].values() if v["status"] == "superseded"]
    assert [v["superseded_by"] for v in superseded] == list(finals(in_order))
    assert {k: c["session_id"] for k, c in reversed_order["contact"].items()} == {
        k: c["session_id"] for k, c in in_order["contact"].items()
    }


def test_a_renamed_journey_s_old_name_is_superseded_whether_or_not_an_update_was_flushed():
    """Whether the worker flushed an open update under the old name depends on wall
    time; the rows must not: the superseded record goes out either way."""
    from pipeline.replay import collapse
    from tests.unit.core_standins import MINUTE, T0, contact, make_processor, run

    first = contact(T0, T0 + 10 * MINUTE, contact="p1", channel="phone", outcome="resolved")
    second = contact(
        T0 + 12 * MINUTE, T0 + 20 * MINUTE, contact="c2", channel="chat", outcome="resolved"
    )
    flushed = make_processor()
    out = run(flushed, second[:1], finish=False) + flushed.flush_updates()
    out += run(flushed, second[1:] + first)
    not_flushed = run(make_processor(), second + first)

    def rows(records):
        return {
            k: {f: v for f, v in r.items() if f != "version"}
            for k, r in collapse(records)["session"].items()
        }

    assert rows(out) == rows(not_flushed)
    assert sorted(r["status"] for r in rows(not_flushed).values()) == ["final", "superseded"]
