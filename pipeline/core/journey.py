"""A journey's record: what a session's held contacts add up to.

:func:`journey_record` builds the ``open``, ``final`` or ``superseded`` record of
one session from the contacts the customer still holds; the customer's state
machine (:class:`pipeline.core.customer.CustomerState`) decides when to send it.
"""

from __future__ import annotations

from dataclasses import replace
from operator import attrgetter

from pipeline.contract.event import RESOLVED
from pipeline.core.contact import Contact
from pipeline.core.records import SESSION_SUPERSEDED, SLA_BREACH, SessionRecord, SlaEvent
from pipeline.core.retraction import cancels_breach
from pipeline.core.sessions import Session

_start_order = attrgetter("started_at", "contact_id")


def session_contacts(session: Session, held: dict[str, Contact]) -> list[Contact]:
    """The session's contacts still held, by start time (ties: contact id)."""
    contacts = [held[c] for c in session.contact_ids if c in held]
    if len(contacts) > 1:
        contacts.sort(key=_start_order)
    return contacts


def journey_record(
    customer_id: str,
    session: Session,
    status: str,
    contacts: list[Contact],
    superseded_by: str | None = None,
) -> SessionRecord:
    """The session's next record (it counts as sent: the session's version moves on).

    ``contacts`` is :func:`session_contacts`. The journey counts the contacts
    that started in it (``session_id``), so its contacts and breaches equal the
    contact rows and SLA events behind it; a thread that goes on in a later
    journey stays with the one it started in.
    """
    session_id = session.session_id
    contacts = [c for c in contacts if c.session_id == session_id]
    path: list[str] = []
    last_channel = None
    last_ended: Contact | None = None
    switch_failures = 0
    sla_breaches = 0
    for contact in contacts:
        channel = contact.channel
        if channel != last_channel:
            path.append(channel)
            last_channel = channel
        ended_at = contact.ended_at
        if ended_at is not None and (
            last_ended is None
            or (ended_at, contact.contact_id) > (last_ended.ended_at, last_ended.contact_id)
        ):
            last_ended = contact
        if contact.switched_into:
            switch_failures += 1
        sla_breaches += contact.sla.breaches
    session.version += 1
    session.pending = False
    first = contacts[0] if contacts else None
    fcr = first.first_contact_resolved if first is not None else None
    superseded = status == SESSION_SUPERSEDED
    return SessionRecord(
        session_id=session.session_id,
        customer_id=customer_id,
        status=status,
        started_at=session.started_at,
        ended_at=session.ended_at,
        channel_path=path,
        contacts=len(contacts),
        events=session.events,
        channel_switches=max(len(path) - 1, 0),
        first_contact_resolved=fcr is True,
        resolved_at_end=last_ended is not None and last_ended.outcome == RESOLVED,
        switch_failures=switch_failures,
        sla_breaches=sla_breaches,
        nps_score=session.nps_score,
        contact_ids=[c.contact_id for c in contacts],
        superseded_by=superseded_by,
        version=session.version,
        fcr_undecided=fcr is None,
        first_outcome_resolved=first is not None and first.outcome == RESOLVED,
        nps_average=session.nps_average(),
        # A superseded journey's feedback belongs to the survivor now.
        feedback=[] if superseded else session.feedback_records(),
    )


# -- corrections of a final record ------------------------------------------------


def net_breaches(fired: list[SlaEvent]) -> int:
    """Breaches among ``fired``, less the retractions of breaches."""
    breaches = 0
    for record in fired:
        if record.kind == SLA_BREACH:
            breaches += 1
        elif cancels_breach(record):
            breaches -= 1
    return breaches


def with_breaches(final: SessionRecord, breaches: int) -> SessionRecord:
    """The next version of a closed journey's record, ``breaches`` more (or fewer) breached."""
    return replace(
        final,
        sla_breaches=final.sla_breaches + breaches,
        version=final.version + 1,
        correction=True,
    )


def with_first_contact_resolved(final: SessionRecord, fcr: bool | None) -> SessionRecord:
    """The next version of a closed journey's record, its first contact's FCR now decided
    (``fcr``; None: still undecided)."""
    return replace(
        final,
        first_contact_resolved=fcr is True,
        fcr_undecided=fcr is None,
        version=final.version + 1,
        correction=True,
    )
