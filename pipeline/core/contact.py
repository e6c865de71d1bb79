"""One contact of a customer, as the customer's state machine keeps it.

A :class:`Contact` counts the contact's events, knows who answered and how it
ended, holds its SLA clocks (an :class:`SlaClock`, in practice a
:class:`pipeline.core.sla.ContactSla`) and builds the next version of its
summary. Its stored form is in :mod:`pipeline.core.state_codec`.

A contact's service-level outcome is decided once, at its settle point
(:meth:`Contact.settle`): when the partition clock passes its end plus the
session gap plus the grace, no event that is not late can change it (an event
dated before the end is late by then). Counting it there, once, is what lets the
Prometheus counters equal the SQL views under any arrival order.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.contract.event import ABANDONED, RESOLVED, InteractionEvent
from pipeline.core.records import (
    ABANDONED_UNANSWERED,
    ANSWERED_IN_TARGET,
    ANSWERED_LATE,
    ContactSummary,
    SlaEvent,
)


class SlaClock(Protocol):
    """What the core needs of :class:`pipeline.core.sla.ContactSla`."""

    first_reply_seconds: float | None
    first_reply_business_seconds: float | None
    breached: bool
    breaches: int
    # The latest queue and team the contact's events named (kept with the clocks,
    # which stamp them on every SLA record).
    queue: str | None
    team: str | None

    # The earliest unfired due time (None: nothing to fire), kept current.
    due_ms: int | None

    def fire_due(self, clock_ms: int) -> list[SlaEvent]: ...
    def observe(
        self, event: InteractionEvent, clock_ms: int | None = None, retraction_window_ms: int = 0
    ) -> list[SlaEvent]: ...
    def next_due_ms(self) -> int | None: ...
    @property
    def is_idle(self) -> bool: ...
    def to_state(self) -> dict[str, Any]: ...
    def to_row(self) -> list[Any]: ...
    @property
    def first_reply_breached(self) -> bool: ...


class Contact:
    """One contact of the customer, as far as the core needs it."""

    __slots__ = (
        "bot",
        "channel",
        "contact_id",
        "contained_reported",
        "ended_at",
        "events",
        "human",
        "identified_at",
        "last_at",
        "outcome",
        "repeated",
        "replied_reported",
        "session_id",
        "settled",
        "sla",
        "sla_since",
        "started_at",
        "switched_into",
        "topic",
        "version",
    )

    def __init__(self, contact_id: str, channel: str, started_at: int, session_id: str) -> None:
        self.contact_id = contact_id
        self.channel = channel
        self.started_at = started_at
        self.ended_at: int | None = None
        self.outcome: str | None = None
        self.topic: str | None = None
        self.events = 0
        self.last_at = started_at
        self.session_id = session_id
        self.sla: Any = None
        self.sla_since: int | None = None  # start of the running SLA clock (ops gauge)
        self.switched_into = False  # a switch failure ends in this contact
        # Summaries sent (the version of the last), and whether one carried the first reply.
        self.version = 0
        self.replied_reported = False
        # Who answered: a bot, a human (an agent's event or a transfer).
        self.bot = False
        self.human = False
        # Whether a contact on the same need followed within the repeat window
        # (None: not known yet, or never checked), and whether a summary carried
        # the containment decision.
        self.repeated: bool | None = None
        self.contained_reported = False
        # The settled service level, queue and team (None: not settled yet).
        self.settled: tuple[str | None, str | None, str | None] | None = None
        # When identity identified the customer of events of it (issue 16).
        self.identified_at: int | None = None

    @property
    def first_contact_resolved(self) -> bool | None:
        """Resolved with no repeat of its need in the window (None: not known yet)."""
        if self.ended_at is None:
            return None
        if self.outcome != RESOLVED:
            return False
        repeated = self.repeated
        return None if repeated is None else not repeated

    @property
    def bot_only(self) -> bool:
        return self.bot and not self.human

    @property
    def contained(self) -> bool | None:
        """A bot-only contact with no repeat of its need in the window (None: not a
        bot-only contact, or not known yet)."""
        if not self.bot_only or self.ended_at is None:
            return None
        repeated = self.repeated
        return None if repeated is None else not repeated

    def service_level(self) -> str | None:
        """The service-level outcome as the contact stands now (None: not applicable)."""
        sla = self.sla
        if sla.first_reply_seconds is not None:
            return ANSWERED_LATE if sla.first_reply_breached else ANSWERED_IN_TARGET
        if self.outcome == ABANDONED:
            return ABANDONED_UNANSWERED
        return None

    def settle(self, customer_id: str) -> ContactSummary:
        """Decide the service level, queue and team for good; the summary that says so."""
        sla = self.sla
        self.settled = (self.service_level(), sla.queue, sla.team)
        return self.summary(customer_id, settled_new=True)

    def summary(self, customer_id: str, settled_new: bool = False) -> ContactSummary:
        """The next version of the contact's summary (call it only to send it)."""
        sla = self.sla
        self.version += 1
        first_reply_new = False
        if not self.replied_reported and sla.first_reply_seconds is not None:
            self.replied_reported = first_reply_new = True
        settled = self.settled
        contained = self.contained
        contained_new = False
        if contained is not None and not self.contained_reported:
            self.contained_reported = contained_new = True
        return ContactSummary(
            contact_id=self.contact_id,
            customer_id=customer_id,
            channel=self.channel,
            session_id=self.session_id,
            started_at=self.started_at,
            ended_at=self.ended_at,
            outcome=self.outcome,
            topic=self.topic,
            first_reply_seconds=sla.first_reply_seconds,
            first_reply_business_seconds=sla.first_reply_business_seconds,
            breached=sla.breached,
            events=self.events,
            version=self.version,
            first_reply_new=first_reply_new,
            first_contact_resolved=self.first_contact_resolved,
            bot_only=self.bot_only,
            contained=contained,
            contained_new=contained_new,
            queue=sla.queue if settled is None else settled[1],
            team=sla.team if settled is None else settled[2],
            service_level=None if settled is None else settled[0],
            settled=settled is not None,
            settled_new=settled_new,
            identified_at=self.identified_at,
        )


def note_identified(contact: Contact | None, at: int, customer_id: str, out: list[Any]) -> None:
    """Identity gave the customer an event of ``contact``, by a link that starts at
    ``at``: keep the earliest such start; a contact that sent a summary sends it again."""
    if contact is None or (contact.identified_at is not None and contact.identified_at <= at):
        return
    contact.identified_at = at
    contact.sla.identified_at = at
    if contact.version:
        out.append(contact.summary(customer_id))


def forget_dropped(dropped: dict[str, tuple[int, Contact]], until_ms: int) -> None:
    """Forget the contacts let go (``contact id -> (clock when let go, contact)``) at
    or before ``until_ms``: no event of theirs can come any more (one would be late)."""
    for contact_id, (at, _) in list(dropped.items()):
        if at <= until_ms:
            del dropped[contact_id]
