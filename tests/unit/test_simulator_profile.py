"""The simulator's bank profile (the defaults of ``cxstream simulate`` and ``demo``)
lands in the ranges a retail bank recognises (issue 13, defect 9)."""

from __future__ import annotations

from collections import Counter
from functools import cache

from pipeline.contract.event import iso_to_ms
from pipeline.replay import collapse, replay_events
from pipeline.settings_loader import build_settings
from pipeline.tools.simulator import SimulatorConfig, bank_profile, generate

WEEK_MS = 7 * 86_400_000


@cache
def _bank_replay() -> tuple[dict, int]:
    """60,000 events with the profile's defaults: 11 days, so FCR (decided once the
    7-day repeat window has passed) is known for the first four."""
    events = [item.event for item in generate(bank_profile(count=60_000, seed=7)) if item.event]
    result = replay_events(events, build_settings(), workers=1)
    return collapse(result.records), max(event.occurred_at for event in events)


def _journeys() -> list[dict]:
    """Final journeys that started at least one contact.

    A web-message thread answered after the session gap leaves a journey of the
    reply alone (no contact starts in it); it is the same contact, not a journey.
    """
    tables = _bank_replay()[0]
    return [s for s in tables["session"].values() if s["status"] == "final" and s["contacts"]]


def test_bank_profile_journeys_take_between_one_and_two_contacts() -> None:
    journeys = _journeys()
    contacts_per_journey = sum(s["contacts"] for s in journeys) / len(journeys)
    assert len(journeys) > 5_000
    assert 1.15 <= contacts_per_journey <= 2.0


def test_bank_profile_first_contact_resolution_is_that_of_a_contact_centre() -> None:
    """FCR by need, over the journeys that started more than the 7-day repeat window
    (and a day) before the input's end: a resolved first contact is decided only
    when the window has passed, an unresolved one at once, so later journeys
    would bias the figure down."""
    input_end_ms = _bank_replay()[1]
    cutoff = input_end_ms - WEEK_MS - 86_400_000
    decided = [
        s for s in _journeys() if s["started_at"] <= cutoff and not s.get("fcr_undecided", False)
    ]
    fcr = sum(1 for s in decided if s["first_contact_resolved"]) / len(decided)
    assert len(decided) > 2_000
    assert 0.68 <= fcr <= 0.80


def test_bank_profile_false_resolutions_are_a_few_percent_of_resolved_contacts() -> None:
    tables = _bank_replay()[0]
    resolved = sum(1 for c in tables["contact"].values() if c["outcome"] == "resolved")
    signals = Counter(s["kind"] for s in tables["journey_signal"].values())
    share = signals["false_resolution"] / resolved
    assert 0.01 <= share <= 0.06


def test_bank_profile_contacts_are_almost_all_digital() -> None:
    """Digital by the channel registry's ``kind`` (branch is the one physical channel)."""
    tables = _bank_replay()[0]
    channels = build_settings().channels
    contacts = list(tables["contact"].values())
    digital = sum(1 for c in contacts if channels.channels[c["channel"]].kind == "digital")
    assert 0.95 <= digital / len(contacts) <= 0.99


def test_mondays_bring_more_journeys_than_tuesdays_with_a_monday_peak() -> None:
    monday = iso_to_ms("2026-03-02T00:00:00+02:00")
    config = bank_profile(count=None, seed=3, start_ms=monday, malformed_share=0.0)
    per_day: Counter[int] = Counter()
    for item in generate(config):
        assert item.event is not None
        day = (item.event.occurred_at - monday) // 86_400_000
        if day >= 2:
            break
        if item.event.type == "contact_started":
            per_day[day] += 1
    assert per_day[0] > 1.15 * per_day[1]


def test_explicit_configs_keep_the_traffic_they_had_before_the_profile() -> None:
    """The golden digests (test_core_golden) pin the traffic itself; these are the knobs."""
    assert SimulatorConfig().monday_peak == 1.0
    assert SimulatorConfig().quick_switch_share == 0.5
    assert SimulatorConfig().false_resolution_return_hours == (6.0, 120.0)


def test_bank_events_per_journey_is_the_profiles_measured_figure() -> None:
    """The live pace (events/s -> journeys/hour) relies on it."""
    from pipeline.tools.simulator import BANK_EVENTS_PER_JOURNEY, _Traffic

    traffic = _Traffic(bank_profile(seed=7))
    events = 0
    for _ in traffic.events():
        events += 1
        if events == 100_000:
            break
    assert abs(events / traffic.journeys - BANK_EVENTS_PER_JOURNEY) < 0.2
