"""Deterministic omnichannel traffic for the demo, the tests and the benchmarks.

:func:`generate` turns a :class:`SimulatorConfig` into :class:`SimItem` objects in
*delivery order*: the order a producer would send them. The traffic is built in
two stages, each with its own seeded random stream, so that changing a delivery
share does not change the journeys themselves:

1. **Journeys.** New customer journeys arrive as a Poisson process in simulated
   time whose intensity follows the bank's week (busy 08-18 Helsinki time on
   weekdays, quieter evenings and weekends, almost silent nights). Each journey
   is a script (a bot chat, a chat escalated to a human, a failed bot chat followed
   by a phone call, a web message answered next morning, ...) that lays out the
   events of one or more contacts. Events are merged across journeys in event-time
   order through a heap.
2. **Delivery.** The event-time stream is perturbed the way real producers do it:
   a few events arrive after later ones (within the grace period), a few arrive
   very late (beyond session gap + grace), some are sent twice with the same
   ``event_id``, and some items are broken (bad JSON or undecodable bytes).

Nothing here reads the wall clock, global random state or set order: the same
config always yields the same sequence.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.contract.event import (
    ABANDONED,
    AGENT,
    AGENT_REPLY,
    BOT,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER,
    CUSTOMER_MESSAGE,
    FEEDBACK,
    RESOLVED,
    SYSTEM,
    TRANSFERRED,
    UNRESOLVED,
    InteractionEvent,
)
from pipeline.errors import ConfigError

# Stage 2 (delivery order, broken records) lives in its own module; its names are
# part of this module's interface too.
from pipeline.tools.sim_delivery import (
    DUPLICATE,
    IN_ORDER,
    LATE,
    LATE_MIN_LAG_MS,
    MALFORMED,
    OUT_OF_ORDER,
    OUT_OF_ORDER_MAX_LAG_MS,
    Delivery,
    SimItem,
    events_only,
)

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

HELSINKI = ZoneInfo("Europe/Helsinki")
# Monday 2026-03-02 08:00 Helsinki: a fixed start so a seed alone fixes the traffic.
DEFAULT_START_MS = int(datetime(2026, 3, 2, 6, 0, tzinfo=UTC).timestamp() * SECOND_MS)

__all__ = [
    "BANK_EVENTS_PER_JOURNEY",
    "BANK_PROFILE",
    "DUPLICATE",
    "IN_ORDER",
    "LATE",
    "LATE_MIN_LAG_MS",
    "MALFORMED",
    "OUT_OF_ORDER",
    "OUT_OF_ORDER_MAX_LAG_MS",
    "SimItem",
    "SimulatorConfig",
    "bank_profile",
    "events_only",
    "generate",
]

TOPICS = ("payments", "cards", "account", "loan", "mortgage", "investments", "insurance")
_TOPIC_WEIGHTS = (0.22, 0.2, 0.16, 0.12, 0.1, 0.1, 0.1)
_MEETING_TOPICS = ("loan", "mortgage", "investments", "insurance")

DEFAULT_JOURNEY_WEIGHTS: Mapping[str, float] = {
    "chat_bot_resolved": 0.24,
    "chat_escalated": 0.13,
    "chat_switch": 0.10,
    "web_message": 0.18,
    "phone_call": 0.18,
    "web_meeting": 0.05,
    "branch_visit": 0.04,
    "false_resolution": 0.08,
    # Off by default, so the traffic of existing seeds and weights is unchanged (a
    # zero weight at the end never changes what rng.choices picks): a need bounced
    # over days, for tests of needs (issue 15).
    "bounced_over_days": 0.0,
}

# Service hours (local Helsinki time, weekday index 0=Mon -> (open, close) hours).
_OFFICE_HOURS = {d: (8.0, 18.0) for d in range(5)}
_PHONE_HOURS = {**{d: (8.0, 20.0) for d in range(5)}, 5: (10.0, 16.0)}
_BRANCH_HOURS = {d: (10.0, 16.5) for d in range(5)}
# Every boundary above (and in period_of) falls on a local half hour, and Helsinki's
# UTC offset is whole hours, so open/closed is constant within a UTC half hour.
_BUCKET_MS = 30 * 60_000

# How much more or less likely a journey is in a period of the week than its base
# weight says: nobody books a web meeting at 3 a.m., web messages pile up in the
# evening (and are answered next morning, which is where SLA breaches come from).
_PERIOD_INTENSITY = {"office": 1.0, "evening": 0.35, "weekend": 0.25, "night": 0.04}
_AFFINITY: Mapping[str, Mapping[str, float]] = {
    "chat_bot_resolved": {"office": 1.0, "evening": 1.3, "weekend": 1.3, "night": 1.5},
    "chat_escalated": {"office": 1.0, "evening": 0.6, "weekend": 0.4, "night": 0.0},
    "chat_switch": {"office": 1.0, "evening": 1.2, "weekend": 1.2, "night": 1.2},
    "web_message": {"office": 1.0, "evening": 3.0, "weekend": 3.0, "night": 3.0},
    "phone_call": {"office": 1.0, "evening": 0.4, "weekend": 0.2, "night": 0.0},
    "web_meeting": {"office": 1.0, "evening": 0.0, "weekend": 0.0, "night": 0.0},
    "branch_visit": {"office": 1.0, "evening": 0.0, "weekend": 0.0, "night": 0.0},
    "false_resolution": {"office": 1.0, "evening": 1.0, "weekend": 1.0, "night": 1.0},
    "bounced_over_days": {"office": 1.0, "evening": 1.0, "weekend": 1.0, "night": 1.0},
}


@dataclass(frozen=True)
class SimulatorConfig:
    """What to simulate. Shares are per generated event; ``count`` counts every item."""

    customers: int = 1000
    count: int | None = 10_000
    seed: int = 1
    start_ms: int = DEFAULT_START_MS
    # New journeys per hour at the weekday office-hours peak; quieter periods scale down.
    arrival_rate_per_hour: float = 3000.0
    out_of_order_share: float = 0.02
    late_share: float = 0.005
    duplicate_share: float = 0.01
    malformed_share: float = 0.01
    journey_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_JOURNEY_WEIGHTS)
    )
    producer: str = "simulator"
    # Journeys on a Monday (Helsinki) are this many times as frequent as on other
    # weekdays: the weekend's backlog arrives. 1.0 = no Monday peak.
    monday_peak: float = 1.0
    # A falsely resolved contact's customer comes back this many hours later
    # (uniform between the two).
    false_resolution_return_hours: tuple[float, float] = (6.0, 120.0)
    # Share of channel switches made within 20 minutes of the failed contact (the
    # rest within 2 h, or 2-8 h); a quick switch stays in the same journey.
    quick_switch_share: float = 0.5

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ConfigError("customers must be at least 1")
        if self.count is not None and self.count < 0:
            raise ConfigError("count must be >= 0 or None")
        if self.arrival_rate_per_hour <= 0:
            raise ConfigError("arrival_rate_per_hour must be positive")
        if self.monday_peak <= 0:
            raise ConfigError("monday_peak must be positive")
        for name in ("out_of_order_share", "late_share", "duplicate_share", "malformed_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1)")
        unknown = sorted(set(self.journey_weights) - set(DEFAULT_JOURNEY_WEIGHTS))
        if unknown:
            raise ConfigError(f"unknown journey scripts {unknown}; known: {list(_SCRIPTS)}")


# The bank profile: what `cxstream simulate` and `cxstream demo` generate unless
# told otherwise (docs/ops.md, "Simulator profile"). SimulatorConfig's own
# defaults stay the small, busy population the tests and goldens were built on
# (many repeats, many switches): good for exercising the core, not a bank.
# Measured over 60,000 events, 11 days (tests/unit/test_simulator_profile.py):
# 1.21 contacts per journey, FCR by need 70-71%, false resolutions 3.5% of
# resolved contacts, 96% of contacts digital (branch the rest), a quarter phone.
BANK_PROFILE: Mapping[str, Any] = {
    # About 5 journeys per customer per year at ~700 journeys a day.
    "customers": 50_000,
    "arrival_rate_per_hour": 60.0,
    "monday_peak": 1.3,
    "false_resolution_return_hours": (2.0, 48.0),
    # A customer the chatbot fails calls within minutes, in the same journey.
    "quick_switch_share": 0.9,
    "journey_weights": {
        "chat_bot_resolved": 0.32,
        "chat_escalated": 0.14,
        "chat_switch": 0.25,
        "web_message": 0.10,
        "phone_call": 0.12,
        "web_meeting": 0.035,
        "branch_visit": 0.005,
        "false_resolution": 0.03,
    },
}


# Events a journey of the bank profile produces on average (more contacts and
# feedback than SimulatorConfig's 6.1); turns an events/s pace into a journey
# arrival rate. A test measures it.
BANK_EVENTS_PER_JOURNEY = 7.9


def bank_profile(**fields: Any) -> SimulatorConfig:
    """A :class:`SimulatorConfig` of :data:`BANK_PROFILE`, ``fields`` overriding it."""
    return SimulatorConfig(**{**BANK_PROFILE, **fields})


def generate(config: SimulatorConfig) -> Iterator[SimItem]:
    """Yield ``config.count`` items (forever if None) in delivery order, deterministically."""
    events = _Traffic(config).events()
    items = Delivery(config).deliver(events)
    if config.count is None:
        yield from items
        return
    for produced, item in enumerate(items):
        if produced >= config.count:
            return
        yield item


# --------------------------------------------------------------------------- time


def _local(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / SECOND_MS, HELSINKI)


def period_of(at_ms: int) -> str:
    """``office``, ``evening``, ``weekend`` or ``night`` in Helsinki local time."""
    return _period_of_bucket(at_ms // _BUCKET_MS)


@functools.lru_cache(maxsize=4096)
def _period_of_bucket(bucket: int) -> str:
    local = _local(bucket * _BUCKET_MS)
    hour = local.hour + local.minute / 60
    if local.weekday() < 5:
        if 8 <= hour < 18:
            return "office"
        if 7 <= hour < 22:
            return "evening"
        return "night"
    return "weekend" if 9 <= hour < 21 else "night"


def period_intensity(at_ms: int, monday_peak: float = 1.0) -> float:
    """The share of the weekday office-hours journey arrival rate that applies at ``at_ms``.

    With ``monday_peak`` != 1, Mondays (Helsinki) are scaled by it.
    """
    intensity = _PERIOD_INTENSITY[period_of(at_ms)]
    if monday_peak != 1.0 and _is_monday(at_ms // _BUCKET_MS):
        return intensity * monday_peak
    return intensity


@functools.lru_cache(maxsize=4096)
def _is_monday(bucket: int) -> bool:
    return _local(bucket * _BUCKET_MS).weekday() == 0


def next_open(at_ms: int, hours: Mapping[int, tuple[float, float]]) -> int:
    """The first instant at or after ``at_ms`` inside ``hours`` (local Helsinki time)."""
    local = _local(at_ms)
    for day_offset in range(8):
        day = (local + timedelta(days=day_offset)).date()
        span = hours.get(day.weekday())
        if span is None:
            continue
        midnight = datetime(day.year, day.month, day.day, tzinfo=HELSINKI)
        opens = _to_ms(midnight + timedelta(hours=span[0]))
        closes = _to_ms(midnight + timedelta(hours=span[1]))
        if at_ms < closes:
            return max(at_ms, opens)
    raise ConfigError("service hours are empty")


def _to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * SECOND_MS)


class _ServiceHours:
    """:func:`next_open` for fixed hours, memoised per half-hour bucket (a hot path)."""

    def __init__(self, hours: Mapping[int, tuple[float, float]]) -> None:
        self.hours = hours
        self._opening: dict[int, int | None] = {}  # bucket -> next opening, None if open

    def next_open(self, at_ms: int) -> int:
        bucket = at_ms // _BUCKET_MS
        if bucket not in self._opening:
            start = bucket * _BUCKET_MS
            first = next_open(start, self.hours)
            self._opening[bucket] = None if first == start else first
        opening = self._opening[bucket]
        return at_ms if opening is None else opening

    def is_open(self, at_ms: int) -> bool:
        return self.next_open(at_ms) == at_ms


_OFFICE = _ServiceHours(_OFFICE_HOURS)
_PHONE = _ServiceHours(_PHONE_HOURS)
_BRANCH = _ServiceHours(_BRANCH_HOURS)


# ----------------------------------------------------------------------- journeys


class _Journey:
    """Collects the events of one customer journey (one or more contacts)."""

    def __init__(self, traffic: _Traffic, customer_id: str, topic: str) -> None:
        self.traffic = traffic
        self.rng = traffic.rng
        self.customer_id = customer_id
        self.topic = topic
        self.drafts: list[tuple[int, dict[str, Any]]] = []

    def contact(self, channel: str) -> _Contact:
        return _Contact(self, channel, self.traffic.next_contact_id())

    def uniform_ms(self, low_ms: float, high_ms: float) -> int:
        return int(self.rng.uniform(low_ms, high_ms))

    def agent_id(self) -> str:
        return f"a-{self.rng.randint(1, 400):04d}"

    def score(self, mood: str) -> int:
        """An NPS answer: ``happy`` leans to promoters, ``upset`` to detractors."""
        roll = self.rng.random()
        if mood == "happy":
            return self.rng.choice((9, 10)) if roll < 0.6 else self.rng.randint(5, 8)
        return self.rng.randint(0, 6) if roll < 0.65 else self.rng.randint(7, 9)


class _Contact:
    def __init__(self, journey: _Journey, channel: str, contact_id: str) -> None:
        self.journey = journey
        self.channel = channel
        self.contact_id = contact_id

    def add(self, at: int, type_: str, actor: str, **fields: Any) -> int:
        fields.setdefault("topic", self.journey.topic)
        draft = {
            "customer_id": self.journey.customer_id,
            "channel": self.channel,
            "contact_id": self.contact_id,
            "type": type_,
            "actor": actor,
            **fields,
        }
        self.journey.drafts.append((at, draft))
        return at

    def end(self, at: int, outcome: str, actor: str, *, mood: str, feedback: float) -> int:
        """Close the contact and maybe ask for feedback; returns the end time.

        ``mood`` is how a resolved contact felt (``upset`` after a switch); an
        unresolved or abandoned one is always ``upset``.
        """
        agent_id = self.journey.agent_id() if actor == AGENT else None
        self.add(at, CONTACT_ENDED, actor, outcome=outcome, agent_id=agent_id)
        journey = self.journey
        if outcome != RESOLVED:
            mood = "upset"
        if journey.rng.random() < feedback:
            asked = at + journey.uniform_ms(1 * MINUTE_MS, 30 * MINUTE_MS)
            self.add(asked, FEEDBACK, CUSTOMER, score=journey.score(mood))
        return at


def _bot_chat(j: _Journey, c: _Contact, at: int, turns: int) -> int:
    """Customer and bot take ``turns`` turns; returns the time of the last bot reply."""
    for _ in range(turns):
        at = c.add(at + j.uniform_ms(5 * SECOND_MS, 60 * SECOND_MS), CUSTOMER_MESSAGE, CUSTOMER)
        at = c.add(at + j.uniform_ms(1 * SECOND_MS, 4 * SECOND_MS), AGENT_REPLY, BOT)
    return at


def _chat_bot_resolved(j: _Journey, at: int, *, feedback: float = 0.3) -> int:
    c = j.contact("chat")
    c.add(at, CONTACT_STARTED, CUSTOMER)
    at = _bot_chat(j, c, at, j.rng.randint(1, 3))
    ended = at + j.uniform_ms(5 * SECOND_MS, 60 * SECOND_MS)
    return c.end(ended, RESOLVED, j.rng.choice((CUSTOMER, BOT)), mood="happy", feedback=feedback)


def _chat_escalated(j: _Journey, at: int, *, feedback: float = 0.3) -> int:
    """Bot chat handed to a human; the first human reply comes within or after 60 s."""
    c = j.contact("chat")
    c.add(at, CONTACT_STARTED, CUSTOMER)
    if j.rng.random() < 0.6:
        at = _bot_chat(j, c, at, 1)
        at = c.add(at + j.uniform_ms(5_000, 40_000), CUSTOMER_MESSAGE, CUSTOMER)
        at = c.add(at + j.uniform_ms(500, 3_000), TRANSFERRED, BOT, attributes={"to": "human"})
    else:
        # "I want to talk to a person": routed to the human queue before any bot
        # reply, so the human's reply is the first reply the SLA clock sees.
        at = c.add(at + j.uniform_ms(3_000, 20_000), CUSTOMER_MESSAGE, CUSTOMER)
        at = c.add(at + j.uniform_ms(500, 2_000), TRANSFERRED, SYSTEM, attributes={"to": "human"})
    wait = j.uniform_ms(8_000, 58_000) if j.rng.random() < 0.75 else j.uniform_ms(62_000, 420_000)
    agent = j.agent_id()
    at = c.add(at + wait, AGENT_REPLY, AGENT, agent_id=agent)
    for _ in range(j.rng.randint(1, 3)):
        at = c.add(at + j.uniform_ms(10_000, 90_000), CUSTOMER_MESSAGE, CUSTOMER)
        at = c.add(at + j.uniform_ms(15_000, 120_000), AGENT_REPLY, AGENT, agent_id=agent)
    ended = at + j.uniform_ms(10_000, 120_000)
    return c.end(ended, RESOLVED, AGENT, mood="happy", feedback=feedback)


def _phone_call(j: _Journey, at: int, *, mood: str = "happy", feedback: float = 0.25) -> int:
    """A call answered in the queue within 3 min (mostly) or after it."""
    c = j.contact("phone")
    at = _PHONE.next_open(at)
    c.add(at, CONTACT_STARTED, CUSTOMER, attributes={"queue": j.topic})
    wait = j.uniform_ms(5_000, 175_000) if j.rng.random() < 0.8 else j.uniform_ms(185_000, 900_000)
    agent = j.agent_id()
    at = c.add(at + wait, AGENT_REPLY, AGENT, agent_id=agent)
    at = c.add(at + j.uniform_ms(3_000, 20_000), CUSTOMER_MESSAGE, CUSTOMER)
    if j.rng.random() < 0.1:
        at = c.add(at + j.uniform_ms(MINUTE_MS, 4 * MINUTE_MS), TRANSFERRED, AGENT, agent_id=agent)
        at = c.add(at + j.uniform_ms(20_000, 150_000), AGENT_REPLY, AGENT, agent_id=j.agent_id())
    outcome = RESOLVED if j.rng.random() < 0.88 else UNRESOLVED
    ended = at + j.uniform_ms(2 * MINUTE_MS, 15 * MINUTE_MS)
    return c.end(ended, outcome, AGENT, mood=mood, feedback=feedback)


def _branch_visit(j: _Journey, at: int, *, mood: str = "happy", feedback: float = 0.3) -> int:
    c = j.contact("branch")
    at = _BRANCH.next_open(at)
    c.add(at, CONTACT_STARTED, CUSTOMER, attributes={"ticket": f"{j.rng.randint(1, 999):03d}"})
    agent = j.agent_id()
    at = c.add(at + j.uniform_ms(MINUTE_MS, 25 * MINUTE_MS), AGENT_REPLY, AGENT, agent_id=agent)
    at = c.add(at + j.uniform_ms(20_000, 90_000), CUSTOMER_MESSAGE, CUSTOMER)
    ended = at + j.uniform_ms(8 * MINUTE_MS, 40 * MINUTE_MS)
    return c.end(ended, RESOLVED, AGENT, mood=mood, feedback=feedback)


def _web_meeting(j: _Journey, at: int) -> int:
    """A video negotiation with an advisor, e.g. about a loan."""
    j.topic = j.rng.choice(_MEETING_TOPICS)
    c = j.contact("web_meeting")
    at = _OFFICE.next_open(at)
    c.add(at, CONTACT_STARTED, CUSTOMER, attributes={"meeting": "video"})
    agent = j.agent_id()
    at = c.add(at + j.uniform_ms(0, 4 * MINUTE_MS), AGENT_REPLY, AGENT, agent_id=agent)
    at = c.add(at + j.uniform_ms(30_000, 3 * MINUTE_MS), CUSTOMER_MESSAGE, CUSTOMER)
    outcome = RESOLVED if j.rng.random() < 0.8 else UNRESOLVED
    ended = at + j.uniform_ms(20 * MINUTE_MS, 60 * MINUTE_MS)
    return c.end(ended, outcome, AGENT, mood="happy", feedback=0.35)


def _human_web_reply_at(j: _Journey, sent: int) -> int:
    """When an agent answers a web message sent at ``sent``.

    In office hours most messages are answered within 2 h and some wait in a
    backlog; a message sent in the evening or at the weekend waits for the next
    office morning, which is how the 2-hour target is breached.
    """
    if _OFFICE.is_open(sent):
        if j.rng.random() < 0.75:
            candidate = sent + j.uniform_ms(3 * MINUTE_MS, 115 * MINUTE_MS)
        else:
            candidate = sent + j.uniform_ms(125 * MINUTE_MS, 6 * HOUR_MS)
        return _OFFICE.next_open(candidate)
    return _OFFICE.next_open(sent) + j.uniform_ms(5 * MINUTE_MS, 150 * MINUTE_MS)


def _web_message(j: _Journey, at: int) -> int:
    c = j.contact("web_message")
    c.add(at, CONTACT_STARTED, CUSTOMER)
    sent = c.add(at, CUSTOMER_MESSAGE, CUSTOMER)
    if j.rng.random() < 0.4:
        # The auto-acknowledgement does not stop a human-only SLA clock.
        auto = sent + j.uniform_ms(2_000, 10_000)
        c.add(auto, AGENT_REPLY, BOT, attributes={"auto_reply": "true"})
    agent = j.agent_id()
    last = c.add(_human_web_reply_at(j, sent), AGENT_REPLY, AGENT, agent_id=agent)
    if j.rng.random() < 0.35:
        # A follow-up in the same thread starts the next_reply clock.
        follow_up = c.add(
            last + j.uniform_ms(10 * MINUTE_MS, 20 * HOUR_MS), CUSTOMER_MESSAGE, CUSTOMER
        )
        last = c.add(_human_web_reply_at(j, follow_up), AGENT_REPLY, AGENT, agent_id=agent)
    outcome = RESOLVED if j.rng.random() < 0.9 else UNRESOLVED
    ended = c.end(
        last + j.uniform_ms(MINUTE_MS, 30 * MINUTE_MS), outcome, AGENT, mood="happy", feedback=0.2
    )
    if outcome == UNRESOLVED and j.rng.random() < 0.5:
        return _phone_call(j, ended + j.uniform_ms(30 * MINUTE_MS, 6 * HOUR_MS), mood="upset")
    return ended


def _chat_switch(j: _Journey, at: int) -> int:
    """The chatbot cannot help; the customer switches to phone or branch (a failure)."""
    c = j.contact("chat")
    c.add(at, CONTACT_STARTED, CUSTOMER)
    at = _bot_chat(j, c, at, j.rng.randint(1, 3))
    if j.rng.random() < 0.6:
        ended = c.end(at + j.uniform_ms(5_000, 60_000), UNRESOLVED, BOT, mood="upset", feedback=0.1)
    else:
        ended = c.end(
            at + j.uniform_ms(30_000, 5 * MINUTE_MS), ABANDONED, CUSTOMER, mood="upset", feedback=0
        )
    roll = j.rng.random()
    gap = _switch_gap(j)
    if roll < 0.6:
        return _phone_call(j, ended + gap, mood="upset", feedback=0.45)
    if roll < 0.8:
        return _branch_visit(j, ended + gap, mood="upset", feedback=0.45)
    retry = j.contact("chat")
    at = retry.add(ended + j.uniform_ms(MINUTE_MS, 10 * MINUTE_MS), CONTACT_STARTED, CUSTOMER)
    at = _bot_chat(j, retry, at, 1)
    ended = retry.end(at + j.uniform_ms(5_000, 60_000), UNRESOLVED, BOT, mood="upset", feedback=0)
    return _phone_call(j, ended + gap, mood="upset", feedback=0.45)


def _switch_gap(j: _Journey) -> int:
    """Minutes to hours between the failed contact and the next one."""
    roll = j.rng.random()
    quick = j.traffic.config.quick_switch_share
    if roll < quick:
        return j.uniform_ms(2 * MINUTE_MS, 20 * MINUTE_MS)
    # The slower switches keep their 70:30 split of what is left.
    if roll < quick + (1 - quick) * 0.7:
        return j.uniform_ms(20 * MINUTE_MS, 2 * HOUR_MS)
    return j.uniform_ms(2 * HOUR_MS, 8 * HOUR_MS)


def _false_resolution(j: _Journey, at: int) -> int:
    """Marked resolved, yet the customer is back on the same topic within days."""
    if j.rng.random() < 0.6:
        ended = _chat_bot_resolved(j, at, feedback=0.1)
    else:
        ended = _phone_call(j, at, feedback=0.1)
    low_h, high_h = j.traffic.config.false_resolution_return_hours
    back = ended + j.uniform_ms(low_h * HOUR_MS, high_h * HOUR_MS)
    if j.rng.random() < 0.6:
        return _phone_call(j, back, mood="upset", feedback=0.4)
    return _chat_escalated(j, back, feedback=0.4)


def _bounced_over_days(j: _Journey, at: int) -> int:
    """Bounced ("pompottelu"): the bot cannot help on chat, again a day or two later,
    and the customer phones one to three days after that, all on one need."""
    for _ in range(2):
        c = j.contact("chat")
        c.add(at, CONTACT_STARTED, CUSTOMER)
        at = _bot_chat(j, c, at, j.rng.randint(1, 3))
        ended = c.end(at + j.uniform_ms(5_000, 60_000), UNRESOLVED, BOT, mood="upset", feedback=0.1)
        at = ended + j.uniform_ms(24 * HOUR_MS, 48 * HOUR_MS)
    return _phone_call(j, at, mood="upset", feedback=0.5)


_SCRIPTS: Mapping[str, Callable[[_Journey, int], int]] = {
    "chat_bot_resolved": _chat_bot_resolved,
    "chat_escalated": _chat_escalated,
    "chat_switch": _chat_switch,
    "web_message": _web_message,
    "phone_call": _phone_call,
    "web_meeting": _web_meeting,
    "branch_visit": _branch_visit,
    "false_resolution": _false_resolution,
    "bounced_over_days": _bounced_over_days,
}


class _Traffic:
    """The event-time stream: journeys arriving over simulated time, merged by time."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(f"cxstream-journeys-{config.seed}")
        self.busy_until: dict[str, int] = {}
        self.contacts = 0
        self.events_made = 0
        self.journeys = 0  # journeys made (a measure; no effect on the traffic)
        self.script_names = [name for name in _SCRIPTS if name in config.journey_weights]

    def next_contact_id(self) -> str:
        self.contacts += 1
        return f"k-{self.config.seed}-{self.contacts:08d}"

    def events(self) -> Iterator[InteractionEvent]:
        """Events of all journeys in event-time order (ties in creation order)."""
        heap: list[tuple[int, int, InteractionEvent]] = []
        pushed = 0
        arrival = self._next_arrival(self.config.start_ms)
        while True:
            while heap and heap[0][0] <= arrival:
                yield heapq.heappop(heap)[2]
            for event in self._journey(arrival):
                pushed += 1
                heapq.heappush(heap, (event.occurred_at, pushed, event))
            arrival = self._next_arrival(arrival)

    def _next_arrival(self, after_ms: int) -> int:
        # Thinning: draw at the peak rate, keep a draw with the period's intensity
        # relative to that peak. With monday_peak 1.0 the arithmetic (x * 1.0,
        # x / 1.0) is exact, so explicit configs give the same traffic as before.
        monday_peak = self.config.monday_peak
        peak = max(1.0, monday_peak)
        mean_gap_ms = HOUR_MS / (self.config.arrival_rate_per_hour * peak)
        at = after_ms
        while True:
            at += max(1, int(self.rng.expovariate(1.0) * mean_gap_ms))
            if self.rng.random() < period_intensity(at, monday_peak) / peak:
                return at

    def _journey(self, at: int) -> list[InteractionEvent]:
        script = self._pick_script(at)
        if script is None:
            return []
        customer_id = self._pick_customer(at)
        topic = self.rng.choices(TOPICS, _TOPIC_WEIGHTS)[0]
        journey = _Journey(self, customer_id, topic)
        _SCRIPTS[script](journey, at)
        made = []
        for occurred_at, draft in journey.drafts:
            self.events_made += 1
            event_id = f"e-{self.config.seed}-{self.events_made:08d}"
            made.append(
                InteractionEvent(
                    event_id=event_id,
                    occurred_at=occurred_at,
                    producer=f"{self.config.producer}-{draft['channel']}",
                    **draft,
                )
            )
        self.busy_until[customer_id] = max(e.occurred_at for e in made)
        self.journeys += 1
        return made

    def _pick_script(self, at: int) -> str | None:
        period = period_of(at)
        weights = []
        for name in self.script_names:
            weight = self.config.journey_weights[name] * _AFFINITY[name][period]
            if name == "branch_visit" and not _BRANCH.is_open(at):
                weight = 0.0
            weights.append(weight)
        if sum(weights) <= 0:
            return None
        return self.rng.choices(self.script_names, weights)[0]

    def _pick_customer(self, at: int) -> str:
        # Prefer a customer with no journey in progress, so journeys of one
        # customer follow each other; with a small population overlap is accepted.
        customer_id = ""
        for _ in range(8):
            customer_id = f"c-{self.rng.randint(1, self.config.customers):06d}"
            if self.busy_until.get(customer_id, 0) < at:
                break
        return customer_id
