"""SLA clocks of one contact, case by case, on concrete times."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline.contract.event import (
    AGENT,
    AGENT_REPLY,
    BOT,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER,
    CUSTOMER_MESSAGE,
    SYSTEM,
    InteractionEvent,
)
from pipeline.core.calendar import Calendar, build_calendars
from pipeline.core.records import SlaEvent
from pipeline.core.sla import ContactSla
from pipeline.core.sla_policy import Policy, policies_for, resolve_policies
from pipeline.errors import ConfigError
from pipeline.settings import PolicySpec
from pipeline.settings_loader import build_settings

HELSINKI = ZoneInfo("Europe/Helsinki")
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
_event_ids = itertools.count()


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Epoch ms of a Helsinki wall-clock time."""
    return int(datetime(year, month, day, hour, minute, tzinfo=HELSINKI).timestamp() * 1000)


# Monday 2 March 2026, 10:00 Helsinki: an ordinary working morning.
T0 = at(2026, 3, 2, 10)


def event(
    kind: str,
    occurred_at: int,
    actor: str = CUSTOMER,
    *,
    channel: str = "web_message",
    topic: str | None = None,
    contact_id: str = "k1",
) -> InteractionEvent:
    return InteractionEvent(
        event_id=f"e{next(_event_ids)}",
        occurred_at=occurred_at,
        customer_id="c1",
        channel=channel,
        contact_id=contact_id,
        type=kind,
        actor=actor,
        topic=topic,
    )


def customer(occurred_at: int, **kwargs: Any) -> InteractionEvent:
    return event(CUSTOMER_MESSAGE, occurred_at, CUSTOMER, **kwargs)


def reply(occurred_at: int, actor: str = AGENT, **kwargs: Any) -> InteractionEvent:
    return event(AGENT_REPLY, occurred_at, actor, **kwargs)


EXTRA_POLICIES = [
    {"name": "web_message_next_reply", "channel": "web_message", "metric": "next_reply",
     "target": "4h", "calendar": "24x7"},
    {"name": "web_message_loan_first_reply", "channel": "web_message", "metric": "first_reply",
     "target": "30m", "calendar": "24x7", "topic": "loan"},
    {"name": "web_message_dispute_first_reply", "channel": "web_message",
     "metric": "first_reply", "target": "2d", "calendar": "banking_days", "topic": "dispute"},
]  # fmt: skip


@pytest.fixture(scope="module")
def calendars() -> dict[str, Calendar]:
    return build_calendars(build_settings().calendars)


@pytest.fixture(scope="module")
def policies(calendars: dict[str, Calendar]) -> tuple[Policy, ...]:
    defaults = build_settings().source["sla_policies"]
    settings = build_settings({"sla_policies": [*defaults, *EXTRA_POLICIES]})
    return resolve_policies(settings.policies, calendars)


def contact(
    policies: Sequence[Policy],
    calendars: dict[str, Calendar],
    channel: str = "web_message",
    contact_id: str = "k1",
) -> ContactSla:
    return ContactSla.open(
        customer_id="c1",
        contact_id=contact_id,
        channel=channel,
        policies=policies,
        business_calendar=calendars["banking_hours"],
    )


def feed(sla: ContactSla, events: Sequence[InteractionEvent]) -> list[SlaEvent]:
    """What the processor does: fire what is due at each event's time, then observe it."""
    out: list[SlaEvent] = []
    for item in events:
        out += sla.fire_due(item.occurred_at)
        out += sla.observe(item)
    return out


def kinds(records: Sequence[SlaEvent]) -> list[tuple[str, str, int]]:
    return [(r.policy, r.kind, r.fired_at) for r in records]


# --- policy resolution -------------------------------------------------------


def test_resolving_a_policy_on_an_unknown_calendar_raises_config_error(
    calendars: dict[str, Calendar],
) -> None:
    spec = PolicySpec("p", "chat", "first_reply", 60.0, calendar="lunar")
    with pytest.raises(ConfigError, match="lunar"):
        resolve_policies([spec], calendars)


def test_the_topic_specific_policy_wins_over_the_generic_one(policies: tuple[Policy, ...]) -> None:
    names = [p.spec.name for p in policies_for(policies, "web_message", "loan")]
    assert names == ["web_message_next_reply", "web_message_loan_first_reply"]
    generic = [p.spec.name for p in policies_for(policies, "web_message", "savings")]
    assert generic == ["web_message_first_reply", "web_message_next_reply"]
    assert [p.spec.name for p in policies_for(policies, "branch", None)] == []


# --- first reply -------------------------------------------------------------


def test_a_first_reply_within_two_hours_gives_no_sla_event(policies, calendars) -> None:
    sla = contact(policies, calendars)
    records = feed(sla, [customer(T0), reply(T0 + 90 * MINUTE_MS)])
    assert records == []
    assert sla.is_idle is True
    assert sla.first_reply_at == T0 + 90 * MINUTE_MS
    assert sla.first_reply_seconds == 5400.0
    assert sla.breached is False


def test_without_a_reply_warning_and_breach_fire_from_fire_due_alone(policies, calendars) -> None:
    sla = contact(policies, calendars)
    assert sla.observe(customer(T0)) == []
    assert sla.next_due_ms() == T0 + 96 * MINUTE_MS
    assert sla.fire_due(T0 + 96 * MINUTE_MS - 1) == []
    warning = sla.fire_due(T0 + 100 * MINUTE_MS)
    assert kinds(warning) == [("web_message_first_reply", "warning", T0 + 96 * MINUTE_MS)]
    assert sla.next_due_ms() == T0 + 2 * HOUR_MS
    breach = sla.fire_due(T0 + 5 * HOUR_MS)
    assert kinds(breach) == [("web_message_first_reply", "breach", T0 + 2 * HOUR_MS)]
    assert breach[0] == SlaEvent(
        sla_event_id="k1:web_message_first_reply:first_reply:0:breach",
        kind="breach",
        customer_id="c1",
        contact_id="k1",
        channel="web_message",
        policy="web_message_first_reply",
        metric="first_reply",
        clock_started_at=T0,
        deadline=T0 + 2 * HOUR_MS,
        target_seconds=7200.0,
        calendar="24x7",
        fired_at=T0 + 2 * HOUR_MS,
        # The digest of this policy's definition (no explicit version in the fixture).
        policy_version="68cc5cd8",
    )
    assert sla.next_due_ms() is None
    assert (sla.breached, sla.breaches, sla.is_idle) == (True, 1, False)


def test_one_late_fire_due_emits_warning_then_breach_in_time_order(policies, calendars) -> None:
    sla = contact(policies, calendars)
    sla.observe(customer(T0))
    assert [r.kind for r in sla.fire_due(T0 + 10 * HOUR_MS)] == ["warning", "breach"]


def test_fire_due_called_twice_never_duplicates(policies, calendars) -> None:
    sla = contact(policies, calendars)
    sla.observe(customer(T0))
    first = sla.fire_due(T0 + 3 * HOUR_MS)
    assert len(first) == 2
    assert sla.fire_due(T0 + 3 * HOUR_MS) == []
    assert sla.fire_due(T0 + 30 * HOUR_MS) == []


def test_the_clock_starts_at_a_queued_contact_started(policies, calendars) -> None:
    sla = contact(policies, calendars, channel="phone")
    sla.observe(event(CONTACT_STARTED, T0, SYSTEM, channel="phone"))
    sla.observe(customer(T0 + MINUTE_MS, channel="phone"))
    assert sla.next_due_ms() == T0 + 144_000  # 0.8 x 3 min from the queued start


def test_a_bot_reply_does_not_stop_a_human_only_clock(policies, calendars) -> None:
    sla = contact(policies, calendars)
    records = feed(sla, [customer(T0), reply(T0 + MINUTE_MS, BOT)])
    assert records == []
    assert sla.is_idle is False
    assert sla.first_reply_at is None
    assert kinds(sla.fire_due(T0 + 2 * HOUR_MS))[-1] == (
        "web_message_first_reply",
        "breach",
        T0 + 2 * HOUR_MS,
    )


def test_a_bot_reply_stops_a_clock_that_is_not_human_only(policies, calendars) -> None:
    sla = contact(policies, calendars, channel="chat")
    records = feed(sla, [customer(T0, channel="chat"), reply(T0 + 20_000, BOT, channel="chat")])
    assert records == []
    assert sla.is_idle is True
    assert sla.first_reply_at == T0 + 20_000
    assert sla.fire_due(T0 + HOUR_MS) == []


def test_a_late_agent_reply_completes_the_breach_exactly_once(policies, calendars) -> None:
    sla = contact(policies, calendars)
    replied_at = T0 + 2 * HOUR_MS + 15 * MINUTE_MS
    records = feed(sla, [customer(T0), reply(replied_at), reply(replied_at + MINUTE_MS)])
    assert [r.kind for r in records] == ["warning", "breach", "completed"]
    completed = records[-1]
    assert completed.sla_event_id == "k1:web_message_first_reply:first_reply:0:completed"
    assert (completed.replied_at, completed.fired_at) == (replied_at, replied_at)
    assert completed.overrun_seconds == 900.0
    assert sla.is_idle is True


def test_a_late_reply_without_an_earlier_fire_due_still_breaches_before_completing(
    policies, calendars
) -> None:
    sla = contact(policies, calendars)
    sla.observe(customer(T0))
    records = sla.observe(reply(T0 + 3 * HOUR_MS))
    assert [r.kind for r in records] == ["warning", "breach", "completed"]


def test_a_reply_at_the_deadline_is_late(policies, calendars) -> None:
    sla = contact(policies, calendars)
    records = feed(sla, [customer(T0), reply(T0 + 2 * HOUR_MS)])
    assert [r.kind for r in records] == ["warning", "breach", "completed"]
    assert records[-1].overrun_seconds == 0.0


def test_a_system_reply_stops_nothing(policies, calendars) -> None:
    sla = contact(policies, calendars)
    feed(sla, [customer(T0), reply(T0 + MINUTE_MS, SYSTEM)])
    assert sla.is_idle is False


# --- next reply --------------------------------------------------------------


def test_next_reply_clocks_start_after_a_reply_and_number_from_one(policies, calendars) -> None:
    sla = contact(policies, calendars)
    records = feed(
        sla,
        [
            customer(T0),
            reply(T0 + HOUR_MS),
            customer(T0 + 2 * HOUR_MS),  # next_reply 1 starts
            customer(T0 + 3 * HOUR_MS),  # a clock runs: nothing new
            reply(T0 + 4 * HOUR_MS),
            customer(T0 + 5 * HOUR_MS),  # next_reply 2 starts
        ],
    )
    assert records == []
    due = sla.fire_due(T0 + 10 * HOUR_MS)
    assert [(r.sla_event_id, r.fired_at) for r in due] == [
        ("k1:web_message_next_reply:next_reply:2:warning", T0 + 5 * HOUR_MS + 192 * MINUTE_MS),
        ("k1:web_message_next_reply:next_reply:2:breach", T0 + 9 * HOUR_MS),
    ]


def test_a_customer_message_without_a_reply_before_it_starts_no_next_reply(
    policies, calendars
) -> None:
    sla = contact(policies, calendars, channel="chat")
    feed(sla, [customer(T0, channel="chat"), reply(T0 + 10_000, BOT, channel="chat")])
    sla.observe(customer(T0 + 20_000, channel="chat"))
    # chat has no next_reply policy: nothing runs.
    assert sla.is_idle is True


# --- topics ------------------------------------------------------------------


def test_the_topic_specific_policy_drives_the_contact(policies, calendars) -> None:
    sla = contact(policies, calendars)
    sla.observe(customer(T0, topic="loan"))
    due = sla.fire_due(T0 + HOUR_MS)
    assert kinds(due) == [
        ("web_message_loan_first_reply", "warning", T0 + 24 * MINUTE_MS),
        ("web_message_loan_first_reply", "breach", T0 + 30 * MINUTE_MS),
    ]


def test_a_topic_learnt_after_the_start_moves_an_unfired_clock(policies, calendars) -> None:
    sla = contact(policies, calendars)
    sla.observe(event(CONTACT_STARTED, T0, SYSTEM))
    sla.observe(customer(T0 + MINUTE_MS, topic="loan"))
    assert sla.next_due_ms() == T0 + 24 * MINUTE_MS  # measured from the contact's start


def test_two_banking_days_from_friday_15_breach_on_tuesday_15(policies, calendars) -> None:
    sla = contact(policies, calendars)
    friday_15 = at(2026, 3, 6, 15)
    sla.observe(customer(friday_15, topic="dispute"))
    breach = sla.fire_due(at(2026, 3, 10, 16))[-1]
    assert (breach.kind, breach.calendar) == ("breach", "banking_days")
    assert breach.deadline == at(2026, 3, 10, 15)
    assert breach.fired_at == at(2026, 3, 10, 15)
    # The warning at 0.8 x 48 h = 38.4 h of banking time: Tuesday 05:24.
    assert sla.fire_due(at(2026, 3, 10, 16)) == []


# --- contact end, metrics, state ---------------------------------------------


def test_contact_ended_stops_clocks_without_firing(policies, calendars) -> None:
    sla = contact(policies, calendars)
    records = feed(sla, [customer(T0), event(CONTACT_ENDED, T0 + HOUR_MS, SYSTEM)])
    assert records == []
    assert sla.is_idle is True
    assert sla.next_due_ms() is None
    assert sla.fire_due(T0 + 10 * HOUR_MS) == []
    sla.observe(customer(T0 + 11 * HOUR_MS))
    assert sla.is_idle is True


def test_first_reply_seconds_count_the_night_but_business_seconds_do_not(
    policies, calendars
) -> None:
    sla = contact(policies, calendars)
    feed(sla, [customer(at(2026, 3, 2, 17)), reply(at(2026, 3, 3, 9))])
    assert sla.first_reply_seconds == 16 * 3600.0
    assert sla.first_reply_business_seconds == 2 * 3600.0


def test_state_round_trip_mid_clock_gives_the_same_later_events(policies, calendars) -> None:
    script = [customer(T0), reply(T0 + HOUR_MS), customer(T0 + 2 * HOUR_MS)]
    later = [customer(T0 + 5 * HOUR_MS + 40 * MINUTE_MS), reply(T0 + 7 * HOUR_MS)]
    straight = contact(policies, calendars)
    feed(straight, script)
    # next_reply 1 runs from 2h: warning at 5h12m, deadline at 6h.
    warned = straight.fire_due(T0 + 5 * HOUR_MS + 30 * MINUTE_MS)
    assert [r.kind for r in warned] == ["warning"]

    state = json.loads(json.dumps(straight.to_state()))
    restored = ContactSla.from_state(state, policies, calendars["banking_hours"])
    assert restored.to_state() == straight.to_state()
    expected = feed(straight, later) + straight.fire_due(T0 + 20 * HOUR_MS)
    actual = feed(restored, later) + restored.fire_due(T0 + 20 * HOUR_MS)
    assert [r.kind for r in actual] == ["breach", "completed"]
    assert actual == expected
    assert restored.to_state() == straight.to_state()


def test_compact_row_round_trip_mid_clock_gives_the_same_state_and_later_events(
    policies, calendars
) -> None:
    script = [customer(T0), reply(T0 + HOUR_MS), customer(T0 + 2 * HOUR_MS)]
    later = [customer(T0 + 5 * HOUR_MS + 40 * MINUTE_MS), reply(T0 + 7 * HOUR_MS)]
    straight = contact(policies, calendars)
    feed(straight, script)
    straight.fire_due(T0 + 5 * HOUR_MS + 30 * MINUTE_MS)

    row = json.loads(json.dumps(straight.to_row()))
    restored = ContactSla.from_row(
        row,
        customer_id="c1",
        contact_id="k1",
        channel="web_message",
        policies=policies,
        business_calendar=calendars["banking_hours"],
    )
    assert restored.to_state() == straight.to_state()
    expected = feed(straight, later) + straight.fire_due(T0 + 20 * HOUR_MS)
    actual = feed(restored, later) + restored.fire_due(T0 + 20 * HOUR_MS)
    assert [r.kind for r in actual] == ["breach", "completed"]
    assert actual == expected
    assert restored.to_row() == straight.to_row()


def test_observe_is_fast_for_a_typical_contact(policies, calendars) -> None:
    """A web-message thread of 8 events; the processor calls observe per event.

    The target is 200,000 calls/s (``calendar_bench.bench_sla``); the test guards against
    an order-of-magnitude regression without failing on a busy CI machine.
    """
    events = [customer(T0)]
    for i in range(1, 4):
        events += [reply(T0 + i * HOUR_MS), customer(T0 + i * HOUR_MS + MINUTE_MS)]
    events.append(event(CONTACT_ENDED, T0 + 5 * HOUR_MS, SYSTEM))
    rounds = 5_000
    began = time.perf_counter()
    for _ in range(rounds):
        sla = contact(policies, calendars)
        for item in events:
            sla.observe(item)
    rate = rounds * len(events) / (time.perf_counter() - began)
    assert rate >= 50_000, f"{rate:,.0f} observe calls/s"
