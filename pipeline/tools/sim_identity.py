"""Simulated identity traffic (issue 16): calls and chats that start anonymous.

With ``SimulatorConfig.identity_share`` above 0, that share of the journeys whose
first contact is a phone call or a chat starts without a customer: the call is
known by the caller's number, the chat by its session id, until the IVR or the
login identifies the customer (an ``identified`` event). Of those:

- most are identified within minutes (:data:`IDENTIFIED_SHARE`, 0.5-5 min after
  the contact's first event, always within the default ``identity.hold``);
- some never are (:data:`NEVER_SHARE`): the events end as an anonymous customer;
- some are linked to a wrong customer first (:data:`WRONG_LINK_SHARE`): an
  ``unlinked`` follows a few minutes later, with the right ``identified`` at the
  same moment (the events since the wrong link go to the right customer).

The journey's other contacts keep their customer id. The worker still dead-letters
identity events (its wiring is not built yet), so the option is off by default;
``cxstream replay`` processes them (docs/producers.md, "Identifiers").
It draws from its own random stream, so traffic with the share at 0 is unchanged.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from typing import Final

from pipeline.contract.event import (
    IDENTIFIED,
    NO_CUSTOMER,
    SYSTEM,
    UNLINKED,
    InteractionEvent,
)

IDENTIFIED_SHARE: Final = 0.85
NEVER_SHARE: Final = 0.10
WRONG_LINK_SHARE: Final = 0.05
MINUTE_MS: Final = 60_000
#: Channels whose contacts can start anonymous, and the identifier kind they use.
IDENTIFIER_KINDS: Final = {"phone": "phone", "chat": "chat_session"}


def phone_number(customer_id: str) -> str:
    """A stable made-up number of the customer (Finnish mobile format)."""
    digits = int(hashlib.sha256(customer_id.encode()).hexdigest()[:12], 16) % 10_000_000
    return f"+358 40 {digits:07d}"


def anonymise(
    events: list[InteractionEvent], rng: random.Random, other_customer: str
) -> list[InteractionEvent]:
    """The journey with its first contact anonymous, plus the identity events.

    ``events`` are one journey's events (one customer); ``other_customer`` is the
    customer a wrong link names. Returns ``events`` unchanged when the first
    contact is not in a channel of :data:`IDENTIFIER_KINDS`.
    """
    if not events:
        return events
    first = min(events, key=lambda e: (e.occurred_at, e.event_id))
    kind = IDENTIFIER_KINDS.get(first.channel)
    if kind is None:
        return events
    customer = first.customer_id
    value = phone_number(customer) if kind == "phone" else f"session-{first.contact_id}"
    contact_id = first.contact_id
    out = [
        replace(e, customer_id=NO_CUSTOMER, identifier_kind=kind, identifier_value=value)
        if e.contact_id == contact_id
        else e
        for e in events
    ]
    draw = rng.random()
    if draw < NEVER_SHARE:
        return out
    start = first.occurred_at
    linked_at = start + int(rng.uniform(0.5, 5.0) * MINUTE_MS)

    def identity_event(suffix: str, at: int, type_: str, who: str) -> InteractionEvent:
        return replace(
            first,
            event_id=f"{first.event_id}-{suffix}",
            occurred_at=at,
            customer_id=who,
            type=type_,
            actor=SYSTEM,
            outcome=None,
            topic=None,
            score=None,
            need_id=None,
            handling_seconds=None,
            identifier_kind=kind,
            identifier_value=value,
        )

    if draw < NEVER_SHARE + WRONG_LINK_SHARE:
        unlinked_at = linked_at + int(rng.uniform(1.0, 5.0) * MINUTE_MS)
        out.append(identity_event("idw", linked_at, IDENTIFIED, other_customer))
        out.append(identity_event("idu", unlinked_at, UNLINKED, other_customer))
        # The right customer, once the mistake is seen: the events since the wrong
        # link belong to it (an event with no link in force goes to the next one).
        out.append(identity_event("id", unlinked_at, IDENTIFIED, customer))
        return out
    out.append(identity_event("id", linked_at, IDENTIFIED, customer))
    return out
