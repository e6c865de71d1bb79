"""The simulator: determinism, contract-clean events, delivery shares and journeys."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from pipeline.contract.event import (
    ACTORS,
    AGENT,
    AGENT_REPLY,
    BOT,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER,
    CUSTOMER_MESSAGE,
    EVENT_TYPES,
    FEEDBACK,
    OUTCOMES,
    UNRESOLVED,
    InteractionEvent,
)
from pipeline.errors import ConfigError, ContractError
from pipeline.settings_loader import build_settings
from pipeline.tools.sim_journeys import HOUR_MS, MINUTE_MS, next_open, period_of
from pipeline.tools.simulator import (
    DEFAULT_START_MS,
    DUPLICATE,
    LATE,
    MALFORMED,
    OUT_OF_ORDER,
    SimItem,
    SimulatorConfig,
    generate,
)

CHANNELS = set(build_settings().channels.keys)
GRACE_MS = 5 * MINUTE_MS
LATE_LAG_MS = 35 * MINUTE_MS


@pytest.fixture(scope="module")
def long_run() -> list[SimItem]:
    """About three days of simulated traffic (a slower arrival rate spans more time)."""
    config = SimulatorConfig(customers=2000, count=40_000, seed=11, arrival_rate_per_hour=400)
    return list(generate(config))


@pytest.fixture(scope="module")
def valid_events(long_run: list[SimItem]) -> list[InteractionEvent]:
    """Each valid event once (duplicates dropped), in delivery order."""
    return [item.event for item in long_run if item.event and item.delivery != DUPLICATE]


def contract_problems(event: InteractionEvent) -> list[str]:
    """The contract rules a validator checks, written out independently of it."""
    problems = []
    if event.type not in EVENT_TYPES:
        problems.append("type")
    if event.actor not in ACTORS:
        problems.append("actor")
    if event.channel not in CHANNELS:
        problems.append("channel")
    if (event.outcome is not None) != (event.type == CONTACT_ENDED):
        problems.append("outcome only and always on contact_ended")
    if event.outcome is not None and event.outcome not in OUTCOMES:
        problems.append("outcome value")
    if (event.score is not None) != (event.type == FEEDBACK):
        problems.append("score only and always on feedback")
    if event.score is not None and not 0 <= event.score <= 10:
        problems.append("score range")
    if event.type in (CUSTOMER_MESSAGE, FEEDBACK, CONTACT_STARTED) and event.actor != CUSTOMER:
        problems.append("customer-side type with another actor")
    if event.type == AGENT_REPLY and event.actor not in (AGENT, BOT):
        problems.append("reply by neither agent nor bot")
    if (event.actor == AGENT) != (event.agent_id is not None):
        problems.append("agent_id exactly on agent events")
    if not re.fullmatch(r"c-\d{6}", event.customer_id):
        problems.append("customer_id")
    if not all(isinstance(v, str) for v in event.attributes.values()):
        problems.append("attributes must be strings")
    return problems


def test_same_seed_yields_identical_items() -> None:
    config = SimulatorConfig(count=3000, seed=42)
    assert list(generate(config)) == list(generate(config))


def test_different_seeds_yield_different_traffic() -> None:
    first = [item.to_json_line() for item in generate(SimulatorConfig(count=500, seed=1))]
    second = [item.to_json_line() for item in generate(SimulatorConfig(count=500, seed=2))]
    assert sum(a == b for a, b in zip(first, second, strict=True)) == 0


def test_changing_a_delivery_share_keeps_the_journeys() -> None:
    """Journeys and delivery draw from separate random streams."""
    base = SimulatorConfig(count=2000, seed=5)
    clean = replace(base, out_of_order_share=0, late_share=0, duplicate_share=0, malformed_share=0)
    clean_by_id = {item.event.event_id: item.event for item in generate(clean)}
    noisy = [item.event for item in generate(base) if item.event]
    shared = [event for event in noisy if event.event_id in clean_by_id]
    assert len(shared) > 1900
    assert [clean_by_id[event.event_id] for event in shared] == shared


def test_thousand_items_hold_at_least_900_valid_events_and_about_one_percent_malformed() -> None:
    items = list(generate(SimulatorConfig(count=1000, seed=7)))
    malformed = [item for item in items if item.is_malformed]
    assert len(items) == 1000
    assert len(items) - len(malformed) >= 900
    assert 3 <= len(malformed) <= 25


def test_every_valid_event_follows_the_contract_rules(valid_events: list[InteractionEvent]) -> None:
    broken = {e.event_id: contract_problems(e) for e in valid_events if contract_problems(e)}
    assert broken == {}


def test_ids_are_deterministic_and_unique(valid_events: list[InteractionEvent]) -> None:
    ids = [e.event_id for e in valid_events]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"e-11-\d{8}", event_id) for event_id in ids)


def test_every_contact_starts_with_contact_started_and_ends_with_contact_ended(
    valid_events: list[InteractionEvent],
) -> None:
    by_contact: dict[str, list[InteractionEvent]] = defaultdict(list)
    for event in valid_events:
        by_contact[event.contact_id].append(event)
    last_time = max(e.occurred_at for e in valid_events)
    # Contacts cut off by the end of the run (or whose late events were still
    # held back) cannot be complete; everything older than two days must be.
    settled = last_time - 48 * HOUR_MS
    bad = []
    for contact_id, events in by_contact.items():
        conversation = sorted(
            (e for e in events if e.type != FEEDBACK), key=lambda e: (e.occurred_at, e.event_id)
        )
        if conversation[0].occurred_at > settled:
            continue
        types = [e.type for e in conversation]
        channels = {e.channel for e in events}
        customers = {e.customer_id for e in events}
        if (
            types[0] != CONTACT_STARTED
            or types[-1] != CONTACT_ENDED
            or types.count(CONTACT_ENDED) != 1
        ):
            bad.append((contact_id, types))
        if len(channels) != 1 or len(customers) != 1:
            bad.append((contact_id, channels, customers))
        feedback = [e for e in events if e.type == FEEDBACK]
        if any(f.occurred_at <= conversation[-1].occurred_at for f in feedback):
            bad.append((contact_id, "feedback before the end"))
    assert len(by_contact) > 3000
    assert bad == []


def _delivery_lags(items: list[SimItem]) -> list[tuple[SimItem, int]]:
    """(item, how far behind the newest already-delivered event time it arrived)."""
    newest = -1
    lags = []
    for item in items:
        if item.event is None:
            continue
        lags.append((item, max(0, newest - item.event.occurred_at)))
        newest = max(newest, item.event.occurred_at)
    return lags


def test_out_of_order_share_is_near_the_configured_share_and_within_the_grace(
    long_run: list[SimItem],
) -> None:
    lags = [(item, lag) for item, lag in _delivery_lags(long_run) if item.delivery != DUPLICATE]
    behind = [(item, lag) for item, lag in lags if lag > 0]
    out_of_order = [lag for item, lag in behind if lag <= GRACE_MS]
    share = len(out_of_order) / len(lags)
    assert 0.012 <= share <= 0.024
    assert all(item.delivery == OUT_OF_ORDER for item, lag in behind if lag <= GRACE_MS)
    # Nothing falls in between: an event is either within the grace or truly late.
    assert [lag for _, lag in behind if GRACE_MS < lag <= LATE_LAG_MS] == []


def test_late_events_arrive_more_than_35_minutes_after_a_successor(long_run: list[SimItem]) -> None:
    lags = {id(item): lag for item, lag in _delivery_lags(long_run)}
    late = [item for item in long_run if item.delivery == LATE]
    valid = sum(1 for item in long_run if item.event and item.delivery != DUPLICATE)
    assert 0.003 <= len(late) / valid <= 0.006
    assert min(lags[id(item)] for item in late) > LATE_LAG_MS


def test_duplicates_repeat_an_earlier_event_with_identical_content(long_run: list[SimItem]) -> None:
    seen: dict[str, InteractionEvent] = {}
    duplicates = 0
    for item in long_run:
        if item.event is None:
            continue
        if item.delivery == DUPLICATE:
            duplicates += 1
            assert seen[item.event.event_id] == item.event
        else:
            assert item.event.event_id not in seen
            seen[item.event.event_id] = item.event
    assert 0.007 <= duplicates / len(seen) <= 0.013


def test_malformed_items_carry_a_broken_json_form_and_undecodable_bytes(
    long_run: list[SimItem],
) -> None:
    malformed = [item for item in long_run if item.delivery == MALFORMED]
    reasons = Counter(item.malformed_reason.split(":")[0] for item in malformed)
    bytes_reasons = Counter(item.malformed_bytes_reason for item in malformed)
    assert set(reasons) == {
        "missing_field",
        "unknown_channel",
        "score_out_of_range",
        "outcome_on_non_ended",
        "bad_timestamp",
        "not_json",
    }
    assert set(bytes_reasons) == {"garbage", "truncated_header", "unknown_fingerprint"}
    for item in malformed:
        assert item.event is None
        raw = item.malformed_bytes
        if item.malformed_bytes_reason == "truncated_header":
            assert raw[:2] == b"\xc3\x01" and len(raw) == 5
        elif item.malformed_bytes_reason == "unknown_fingerprint":
            assert raw[:2] == b"\xc3\x01" and len(raw) > 10
        else:
            assert raw[:2] != b"\xc3\x01"
        if item.malformed_reason == "not_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(item.to_json_line())
        else:
            assert json.loads(item.to_json_line()) == item.malformed_json


def test_malformed_json_breaks_exactly_the_named_rule(long_run: list[SimItem]) -> None:
    for item in long_run:
        broken = item.malformed_json
        if item.malformed_reason == "score_out_of_range":
            assert (broken["type"], broken["score"]) == ("feedback", 42)
        elif item.malformed_reason == "unknown_channel":
            assert broken["channel"] not in CHANNELS
        elif item.malformed_reason == "outcome_on_non_ended":
            assert (broken["type"], broken["outcome"]) == ("customer_message", "resolved")
        elif item.malformed_reason and item.malformed_reason.startswith("missing_field:"):
            assert item.malformed_reason.split(":")[1] not in broken


def _contacts_in(events: list[InteractionEvent], channel: str) -> list[list[InteractionEvent]]:
    """The events of ``channel``, grouped by contact, each group in input order."""
    by_contact: dict[str, list[InteractionEvent]] = defaultdict(list)
    for event in events:
        if event.channel == channel:
            by_contact[event.contact_id].append(event)
    return list(by_contact.values())


def _first_human_reply_minutes(events: list[InteractionEvent]) -> list[float]:
    waits = []
    for contact in _contacts_in(events, "web_message"):
        sent = [e.occurred_at for e in contact if e.type == CUSTOMER_MESSAGE]
        replies = [e.occurred_at for e in contact if e.type == AGENT_REPLY and e.actor == AGENT]
        if sent and replies:
            waits.append((min(replies) - min(sent)) / MINUTE_MS)
    return waits


def test_web_messages_are_answered_both_within_and_after_two_hours(
    valid_events: list[InteractionEvent],
) -> None:
    waits = _first_human_reply_minutes(valid_events)
    within = sum(1 for wait in waits if wait <= 120)
    after = sum(1 for wait in waits if wait > 120)
    assert within > 100
    assert after > 100


def test_some_web_messages_get_a_bot_auto_reply_before_the_human_one(
    valid_events: list[InteractionEvent],
) -> None:
    auto = [e for e in valid_events if e.channel == "web_message" and e.actor == BOT]
    assert len(auto) > 50
    assert {e.attributes["auto_reply"] for e in auto} == {"true"}


def test_an_unresolved_chat_is_followed_by_phone_or_branch_within_a_day(
    valid_events: list[InteractionEvent],
) -> None:
    by_customer: dict[str, list[InteractionEvent]] = defaultdict(list)
    for event in sorted(valid_events, key=lambda e: e.occurred_at):
        by_customer[event.customer_id].append(event)
    switches = 0
    for events in by_customer.values():
        for i, event in enumerate(events):
            failed = event.channel == "chat" and event.type == CONTACT_ENDED
            if not failed or event.outcome != UNRESOLVED:
                continue
            nxt = [e for e in events[i + 1 :] if e.type == CONTACT_STARTED]
            if (
                nxt
                and nxt[0].channel in ("phone", "branch")
                and nxt[0].occurred_at - event.occurred_at <= 24 * HOUR_MS
            ):
                switches += 1
    assert switches > 50


def test_chat_escalations_get_human_first_replies_within_and_over_60_seconds(
    valid_events: list[InteractionEvent],
) -> None:
    waits = []
    for contact in _contacts_in(valid_events, "chat"):
        started = [e.occurred_at for e in contact if e.type == CONTACT_STARTED]
        replies = sorted(e.occurred_at for e in contact if e.type == AGENT_REPLY)
        if started and replies and any(e.actor == AGENT for e in contact):
            waits.append((replies[0] - started[0]) / 1000)
    assert sum(1 for wait in waits if wait <= 60) > 50
    assert sum(1 for wait in waits if wait > 60) > 50


def test_feedback_leans_to_promoters_after_resolution_and_detractors_after_failure(
    valid_events: list[InteractionEvent],
) -> None:
    outcome_of = {e.contact_id: e.outcome for e in valid_events if e.type == CONTACT_ENDED}
    scores: dict[str, list[int]] = defaultdict(list)
    for event in valid_events:
        if event.type == FEEDBACK and event.score is not None:
            scores[outcome_of.get(event.contact_id) or "open"].append(event.score)
    resolved, unresolved = scores["resolved"], scores["unresolved"]
    assert sum(s >= 9 for s in resolved) / len(resolved) > 0.4
    assert sum(s <= 6 for s in unresolved) / len(unresolved) > 0.5


def test_feedback_after_a_channel_switch_leans_to_detractors(
    valid_events: list[InteractionEvent],
) -> None:
    by_customer: dict[str, list[InteractionEvent]] = defaultdict(list)
    for event in sorted(valid_events, key=lambda e: e.occurred_at):
        by_customer[event.customer_id].append(event)
    after_switch = []
    for events in by_customer.values():
        failed_chat = False
        for event in events:
            if event.type == CONTACT_ENDED and event.channel == "chat":
                failed_chat = event.outcome != "resolved"
            elif event.type == FEEDBACK and event.channel in ("phone", "branch") and failed_chat:
                after_switch.append(event.score)
    assert len(after_switch) > 30
    assert sum(s <= 6 for s in after_switch) / len(after_switch) > 0.5


def test_traffic_is_busier_in_office_hours_than_at_night(
    valid_events: list[InteractionEvent],
) -> None:
    starts = Counter(period_of(e.occurred_at) for e in valid_events if e.type == CONTACT_STARTED)
    assert starts["office"] > 5 * starts["night"]
    branch_periods = {
        period_of(e.occurred_at)
        for e in valid_events
        if e.channel in ("branch", "web_meeting") and e.type == CONTACT_STARTED
    }
    assert branch_periods == {"office"}


def test_next_open_moves_a_friday_evening_to_monday_morning() -> None:
    friday_evening = int(datetime(2026, 3, 6, 17, 30, tzinfo=UTC).timestamp() * 1000)  # 19:30 local
    monday_eight = int(datetime(2026, 3, 9, 6, 0, tzinfo=UTC).timestamp() * 1000)  # 08:00 local
    office = {d: (8.0, 18.0) for d in range(5)}
    assert next_open(friday_evening, office) == monday_eight
    assert next_open(DEFAULT_START_MS, office) == DEFAULT_START_MS


def test_default_start_is_monday_eight_in_helsinki() -> None:
    assert int(datetime(2026, 3, 2, 6, tzinfo=UTC).timestamp() * 1000) == DEFAULT_START_MS
    assert period_of(DEFAULT_START_MS) == "office"


def test_journey_weights_select_the_scripts() -> None:
    only_meetings = SimulatorConfig(count=300, seed=3, journey_weights={"web_meeting": 1.0})
    channels = {item.event.channel for item in generate(only_meetings) if item.event}
    assert channels == {"web_meeting"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("customers", 0), ("malformed_share", 1.5), ("arrival_rate_per_hour", 0)],
)
def test_invalid_config_is_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError):
        SimulatorConfig(**{field: value})


def test_unknown_journey_script_is_refused() -> None:
    with pytest.raises(ConfigError, match="teleport"):
        SimulatorConfig(journey_weights={"teleport": 1.0})


def test_the_project_validator_and_codec_accept_every_valid_event(
    valid_events: list[InteractionEvent],
) -> None:
    from pipeline.contract.codec import EventCodec
    from pipeline.contract.jsonform import parse_json_line
    from pipeline.contract.validate import validate

    codec = EventCodec()
    channels = build_settings().channels
    for event in valid_events[:5000]:
        assert validate(event, channels) == event
        assert codec.decode(codec.encode(event)) == event
        assert parse_json_line(SimItem(event=event).to_json_line()) == event


def test_the_project_reader_validator_and_codec_reject_every_malformed_item(
    long_run: list[SimItem],
) -> None:
    from pipeline.contract.codec import EventCodec
    from pipeline.contract.jsonform import parse_json_line
    from pipeline.contract.validate import validate

    codec = EventCodec()
    channels = build_settings().channels
    accepted_json, accepted_bytes = [], []
    for item in long_run:
        if not item.is_malformed:
            continue
        try:
            validate(parse_json_line(item.to_json_line()), channels)
            accepted_json.append(item.malformed_reason)
        except ContractError:
            pass
        try:
            codec.decode(item.malformed_bytes)
            accepted_bytes.append(item.malformed_bytes_reason)
        except ContractError:
            pass
    assert (accepted_json, accepted_bytes) == ([], [])
