"""Test helpers for the stream core: event factory, a processor factory and a
small stand-in for ``pipeline.core.sla.ContactSla`` (first-reply breaches only,
24x7), so the core's own logic is tested apart from the SLA module's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.contract.event import AGENT_REPLY, CONTACT_ENDED, CONTACT_STARTED, InteractionEvent
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import SlaEvent
from pipeline.settings import CoreSettings

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
MINUTE = 60_000
HOUR = 60 * MINUTE


@dataclass(frozen=True)
class StandInPolicy:
    name: str
    channel: str
    target_ms: int


class StandInSla:
    """A first-reply clock per contact: starts at the first event, stops at a reply."""

    def __init__(self, contact_id: str, customer_id: str, channel: str, policy: Any) -> None:
        self.contact_id, self.customer_id, self.channel = contact_id, customer_id, channel
        self.policy = policy
        self.started_at: int | None = None
        self.stopped = False
        self.fired = False
        self.first_reply_seconds: float | None = None
        self.first_reply_business_seconds: float | None = None
        self.breached = False
        self.breaches = 0
        # The real clocks carry the contact's queue and team; the stand-in has none.
        self.queue: str | None = None
        self.team: str | None = None

    @classmethod
    def open(cls, *, customer_id, contact_id, channel, policies, business_calendar):
        policy = next((p for p in policies if p.channel == channel), None)
        return cls(contact_id, customer_id, channel, policy)

    def _deadline(self) -> int | None:
        if self.policy is None or self.started_at is None or self.stopped or self.fired:
            return None
        return self.started_at + self.policy.target_ms

    def next_due_ms(self) -> int | None:
        return self._deadline()

    @property
    def first_reply_breached(self) -> bool:
        return self.breached  # the stand-in has first-reply clocks only

    @property
    def due_ms(self) -> int | None:
        return self._deadline()

    @property
    def is_idle(self) -> bool:
        return self.policy is None or self.started_at is None or self.stopped

    def fire_due(self, clock_ms: int) -> list[SlaEvent]:
        deadline = self._deadline()
        if deadline is None or deadline > clock_ms:
            return []
        self.fired, self.breached, self.breaches = True, True, 1
        return [
            SlaEvent(
                sla_event_id=f"{self.contact_id}:{self.policy.name}:first_reply:0:breach",
                kind="breach",
                customer_id=self.customer_id,
                contact_id=self.contact_id,
                channel=self.channel,
                policy=self.policy.name,
                metric="first_reply",
                clock_started_at=self.started_at,
                deadline=deadline,
                target_seconds=self.policy.target_ms / 1000,
                calendar="24x7",
                fired_at=deadline,
            )
        ]

    def observe(
        self, event: InteractionEvent, clock_ms: int | None = None, retraction_window_ms: int = 0
    ) -> list[SlaEvent]:
        # The stand-in never retracts: the clock and window are accepted and unused.
        if self.policy is None or self.stopped:
            return []
        if self.started_at is None and event.actor == "customer":
            self.started_at = event.occurred_at
        elif self.started_at is not None and event.type in (AGENT_REPLY, CONTACT_ENDED):
            self.stopped = True
            if event.type == AGENT_REPLY:
                self.first_reply_seconds = (event.occurred_at - self.started_at) / 1000
                self.first_reply_business_seconds = self.first_reply_seconds
        return []

    def to_state(self) -> dict[str, Any]:
        return {
            "c": [self.contact_id, self.customer_id, self.channel],
            "p": None
            if self.policy is None
            else [self.policy.name, self.policy.channel, self.policy.target_ms],
            "s": [
                self.started_at,
                self.stopped,
                self.fired,
                self.first_reply_seconds,
                self.breaches,
            ],
        }

    @classmethod
    def from_state(cls, state, policies, business_calendar):
        policy = None if state["p"] is None else StandInPolicy(*state["p"])
        sla = cls(*state["c"], policy)
        sla.started_at, sla.stopped, sla.fired, sla.first_reply_seconds, sla.breaches = state["s"]
        sla.first_reply_business_seconds = sla.first_reply_seconds
        sla.breached = sla.breaches > 0
        return sla

    def to_row(self) -> dict[str, Any]:
        return self.to_state()

    @classmethod
    def from_row(cls, row, *, customer_id, contact_id, channel, policies, business_calendar):
        return cls.from_state(row, policies, business_calendar)


def make_processor(
    policies: tuple = (), *, synchronous: tuple[str, ...] = (), **core: float
) -> PartitionProcessor:
    """A processor with the stand-in SLA; ``synchronous``: channels whose open
    contacts keep a journey open (none by default, so only the gap counts)."""
    return PartitionProcessor(
        core=CoreSettings(**core),
        policies=policies,
        business_calendar=None,
        sla_type=StandInSla,
        synchronous_channels=frozenset(synchronous),
    )


_counter = iter(range(10**9))


def ev(
    at_ms: int,
    *,
    customer: str = "c1",
    contact: str = "k1",
    channel: str = "chat",
    type: str = "customer_message",
    actor: str = "customer",
    outcome: str | None = None,
    topic: str | None = None,
    score: int | None = None,
    event_id: str | None = None,
) -> InteractionEvent:
    return InteractionEvent(
        event_id=event_id or f"e{next(_counter)}",
        occurred_at=at_ms,
        customer_id=customer,
        channel=channel,
        contact_id=contact,
        type=type,
        actor=actor,
        outcome=outcome,
        topic=topic,
        score=score,
    )


def contact(
    start_ms: int,
    end_ms: int,
    *,
    contact: str,
    channel: str,
    outcome: str,
    customer: str = "c1",
    topic: str | None = None,
) -> list[InteractionEvent]:
    """A started and an ended event of one contact."""
    return [
        ev(
            start_ms,
            customer=customer,
            contact=contact,
            channel=channel,
            type=CONTACT_STARTED,
            topic=topic,
        ),
        ev(
            end_ms,
            customer=customer,
            contact=contact,
            channel=channel,
            type=CONTACT_ENDED,
            actor="system",
            outcome=outcome,
        ),
    ]


def run(processor: PartitionProcessor, events, *, finish: bool = True) -> list:
    out = []
    for event in events:
        out.extend(processor.process(event))
    if finish:
        out.extend(processor.end_of_input())
    return out
