"""The journeys of simulated traffic and the bank's week they follow.

Stage 1 of :mod:`pipeline.tools.simulator`: each journey script (a bot chat, a
chat escalated to a human, a failed bot chat followed by a phone call, a web
message answered next morning, ...) lays out the events of one customer journey,
one or more contacts, drawing from the traffic's seeded random stream. Phone
calls, branch visits and advisors keep service hours in Helsinki local time
(:func:`next_open`); the traffic's arrival rate follows the periods of the week
(:func:`period_of`, :func:`period_intensity`).

Nothing here reads the wall clock or global random state.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol
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
)
from pipeline.errors import ConfigError

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS

HELSINKI = ZoneInfo("Europe/Helsinki")

_MEETING_TOPICS = ("loan", "mortgage", "investments", "insurance")

# Service hours (local Helsinki time, weekday index 0=Mon -> (open, close) hours).
_OFFICE_HOURS = {d: (8.0, 18.0) for d in range(5)}
_PHONE_HOURS = {**{d: (8.0, 20.0) for d in range(5)}, 5: (10.0, 16.0)}
_BRANCH_HOURS = {d: (10.0, 16.5) for d in range(5)}
# Every boundary above (and in period_of) falls on a local half hour, and Helsinki's
# UTC offset is whole hours, so open/closed is constant within a UTC half hour.
_BUCKET_MS = 30 * 60_000

# Journey arrivals in each period of the week, relative to weekday office hours.
_PERIOD_INTENSITY = {"office": 1.0, "evening": 0.35, "weekend": 0.25, "night": 0.04}


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


OFFICE = _ServiceHours(_OFFICE_HOURS)
PHONE = _ServiceHours(_PHONE_HOURS)
BRANCH = _ServiceHours(_BRANCH_HOURS)


# ----------------------------------------------------------------------- journeys


class JourneyShape(Protocol):
    """The settings a journey script reads (those of a ``SimulatorConfig``)."""

    @property
    def quick_switch_share(self) -> float: ...

    @property
    def false_resolution_return_hours(self) -> tuple[float, float]: ...


class JourneyTraffic(Protocol):
    """What a journey draws from the traffic it belongs to."""

    @property
    def rng(self) -> random.Random: ...

    @property
    def config(self) -> JourneyShape: ...

    def next_contact_id(self) -> str: ...


class Journey:
    """Collects the events of one customer journey (one or more contacts)."""

    def __init__(self, traffic: JourneyTraffic, customer_id: str, topic: str) -> None:
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
    def __init__(self, journey: Journey, channel: str, contact_id: str) -> None:
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


def _bot_chat(j: Journey, c: _Contact, at: int, turns: int) -> int:
    """Customer and bot take ``turns`` turns; returns the time of the last bot reply."""
    for _ in range(turns):
        at = c.add(at + j.uniform_ms(5 * SECOND_MS, 60 * SECOND_MS), CUSTOMER_MESSAGE, CUSTOMER)
        at = c.add(at + j.uniform_ms(1 * SECOND_MS, 4 * SECOND_MS), AGENT_REPLY, BOT)
    return at


def _chat_bot_resolved(j: Journey, at: int, *, feedback: float = 0.3) -> int:
    c = j.contact("chat")
    c.add(at, CONTACT_STARTED, CUSTOMER)
    at = _bot_chat(j, c, at, j.rng.randint(1, 3))
    ended = at + j.uniform_ms(5 * SECOND_MS, 60 * SECOND_MS)
    return c.end(ended, RESOLVED, j.rng.choice((CUSTOMER, BOT)), mood="happy", feedback=feedback)


def _chat_escalated(j: Journey, at: int, *, feedback: float = 0.3) -> int:
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


def _phone_call(j: Journey, at: int, *, mood: str = "happy", feedback: float = 0.25) -> int:
    """A call answered in the queue within 3 min (mostly) or after it."""
    c = j.contact("phone")
    at = PHONE.next_open(at)
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


def _branch_visit(j: Journey, at: int, *, mood: str = "happy", feedback: float = 0.3) -> int:
    c = j.contact("branch")
    at = BRANCH.next_open(at)
    c.add(at, CONTACT_STARTED, CUSTOMER, attributes={"ticket": f"{j.rng.randint(1, 999):03d}"})
    agent = j.agent_id()
    at = c.add(at + j.uniform_ms(MINUTE_MS, 25 * MINUTE_MS), AGENT_REPLY, AGENT, agent_id=agent)
    at = c.add(at + j.uniform_ms(20_000, 90_000), CUSTOMER_MESSAGE, CUSTOMER)
    ended = at + j.uniform_ms(8 * MINUTE_MS, 40 * MINUTE_MS)
    return c.end(ended, RESOLVED, AGENT, mood=mood, feedback=feedback)


def _web_meeting(j: Journey, at: int) -> int:
    """A video negotiation with an advisor, e.g. about a loan."""
    j.topic = j.rng.choice(_MEETING_TOPICS)
    c = j.contact("web_meeting")
    at = OFFICE.next_open(at)
    c.add(at, CONTACT_STARTED, CUSTOMER, attributes={"meeting": "video"})
    agent = j.agent_id()
    at = c.add(at + j.uniform_ms(0, 4 * MINUTE_MS), AGENT_REPLY, AGENT, agent_id=agent)
    at = c.add(at + j.uniform_ms(30_000, 3 * MINUTE_MS), CUSTOMER_MESSAGE, CUSTOMER)
    outcome = RESOLVED if j.rng.random() < 0.8 else UNRESOLVED
    ended = at + j.uniform_ms(20 * MINUTE_MS, 60 * MINUTE_MS)
    return c.end(ended, outcome, AGENT, mood="happy", feedback=0.35)


def _human_web_reply_at(j: Journey, sent: int) -> int:
    """When an agent answers a web message sent at ``sent``.

    In office hours most messages are answered within 2 h and some wait in a
    backlog; a message sent in the evening or at the weekend waits for the next
    office morning, which is how the 2-hour target is breached.
    """
    if OFFICE.is_open(sent):
        if j.rng.random() < 0.75:
            candidate = sent + j.uniform_ms(3 * MINUTE_MS, 115 * MINUTE_MS)
        else:
            candidate = sent + j.uniform_ms(125 * MINUTE_MS, 6 * HOUR_MS)
        return OFFICE.next_open(candidate)
    return OFFICE.next_open(sent) + j.uniform_ms(5 * MINUTE_MS, 150 * MINUTE_MS)


def _web_message(j: Journey, at: int) -> int:
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


def _chat_switch(j: Journey, at: int) -> int:
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


def _switch_gap(j: Journey) -> int:
    """Minutes to hours between the failed contact and the next one."""
    roll = j.rng.random()
    quick = j.traffic.config.quick_switch_share
    if roll < quick:
        return j.uniform_ms(2 * MINUTE_MS, 20 * MINUTE_MS)
    # The slower switches keep their 70:30 split of what is left.
    if roll < quick + (1 - quick) * 0.7:
        return j.uniform_ms(20 * MINUTE_MS, 2 * HOUR_MS)
    return j.uniform_ms(2 * HOUR_MS, 8 * HOUR_MS)


def _false_resolution(j: Journey, at: int) -> int:
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


def _bounced_over_days(j: Journey, at: int) -> int:
    """Bounced ("pompottelu"): the bot cannot help on chat, again a day or two later,
    and the customer phones one to three days after that, all on one need."""
    for _ in range(2):
        c = j.contact("chat")
        c.add(at, CONTACT_STARTED, CUSTOMER)
        at = _bot_chat(j, c, at, j.rng.randint(1, 3))
        ended = c.end(at + j.uniform_ms(5_000, 60_000), UNRESOLVED, BOT, mood="upset", feedback=0.1)
        at = ended + j.uniform_ms(24 * HOUR_MS, 48 * HOUR_MS)
    return _phone_call(j, at, mood="upset", feedback=0.5)


SCRIPTS: Mapping[str, Callable[[Journey, int], int]] = {
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
