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
from pipeline.core.records import (
    SESSION_SUPERSEDED,
    SLA_BREACH,
    OutputRecord,
    SessionRecord,
    SlaEvent,
)
from pipeline.core.retraction import cancels_breach
from pipeline.core.rules import CoreRules
from pipeline.core.sessions import Session

_start_order = attrgetter("started_at", "contact_id")


def session_contacts(session: Session, held: dict[str, Contact]) -> list[Contact]:
    """The session's contacts still held, by start time (ties: contact id)."""
    contacts = [held[c] for c in session.contact_ids if c in held]
    if len(contacts) > 1:
        contacts.sort(key=_start_order)
    return contacts


def hold_for_open_contacts(session: Session, contacts: dict[str, Contact], rules: CoreRules) -> int:
    """Recompute how long the session's open synchronous contacts (a call, a chat,
    a meeting still going) hold it open, at most ``rules.max_open_contact_ms`` from
    their start; returns the session's reach."""
    synchronous = rules.synchronous
    held = -1
    for contact_id in session.contact_ids:
        contact = contacts.get(contact_id)
        if contact is not None and contact.ended_at is None and contact.channel in synchronous:
            until = contact.started_at + rules.max_open_contact_ms
            if until > held:
                held = until
    session.held_until = held
    return session.reach


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


def supersede_journey(
    customer_id: str,
    superseded: Session,
    survivor_id: str,
    contacts: dict[str, Contact],
    out: list[OutputRecord],
) -> None:
    """``superseded`` lives on as ``survivor_id`` (a bridging merge, or a rename after
    an earlier event): its ``superseded`` record goes out, and the contacts that
    started in it move to the survivor (a summary already sent goes again)."""
    old_id = superseded.session_id
    out.append(
        journey_record(
            customer_id,
            superseded,
            SESSION_SUPERSEDED,
            session_contacts(superseded, contacts),
            survivor_id,
        )
    )
    for contact in contacts.values():
        if contact.session_id == old_id:
            contact.session_id = survivor_id
            if contact.version:
                out.append(contact.summary(customer_id))


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


# (ended_at, contact id, outcome) of the contact whose end a journey's
# ``resolved_at_end`` follows: the latest end (ties: contact id).
EndKey = tuple[int, str, str | None]


def remember_last_end(ends: dict[str, EndKey], session_id: str, contacts: list[Contact]) -> None:
    """Keep in ``ends`` the latest end among the contacts that started in the closing
    journey (``contacts`` is :func:`session_contacts`), for :func:`correct_late_end`."""
    best: EndKey | None = None
    for contact in contacts:
        ended_at = contact.ended_at
        if contact.session_id != session_id or ended_at is None:
            continue
        if best is None or (ended_at, contact.contact_id) > (best[0], best[1]):
            best = (ended_at, contact.contact_id, contact.outcome)
    if best is not None:
        ends[session_id] = best


def correct_final(
    finals: dict[str, SessionRecord],
    session_id: str,
    out: list[OutputRecord],
    *,
    breaches: int = 0,
    first_contact: str | None = None,
    fcr: bool | None = None,
) -> None:
    """Send again the final record of a closed journey kept in ``finals`` (if it is
    kept): ``breaches`` more (or fewer) breached, or, given ``first_contact``, the
    FCR of its first contact decided as ``fcr`` (only if that contact is the
    journey's first)."""
    final = finals.get(session_id)
    if final is None:
        return
    if first_contact is None:
        corrected = with_breaches(final, breaches)
    elif final.contact_ids and final.contact_ids[0] == first_contact:
        corrected = with_first_contact_resolved(final, fcr)
    else:
        return
    finals[session_id] = corrected
    out.append(corrected)


def correct_late_end(
    finals: dict[str, SessionRecord],
    ends: dict[str, EndKey],
    contact: Contact,
    out: list[OutputRecord],
) -> None:
    """The contact ended after the journey it started in closed: send the journey's
    final record again if the end changes it (:func:`with_late_end`)."""
    session_id = contact.session_id
    corrected, last = with_late_end(finals[session_id], contact, ends.get(session_id))
    if last is not None:
        ends[session_id] = last
    if corrected is not None:
        finals[session_id] = corrected
        out.append(corrected)


def with_late_end(
    final: SessionRecord, contact: Contact, last: EndKey | None
) -> tuple[SessionRecord | None, EndKey | None]:
    """A contact that started in the closed journey ended after the journey closed
    (its end arrived late, within the grace, after another customer's event moved
    the partition clock past the close): the journey as it would have closed had
    the end come in time.

    Returns (the corrected record, None if nothing changed; the journey's latest
    end now). ``last`` is the latest end the journey counted so far.
    """
    ended_at = contact.ended_at
    if ended_at is None:
        return None, last
    contact_id = contact.contact_id
    resolved_at_end = final.resolved_at_end
    if last is None or (ended_at, contact_id) >= (last[0], last[1]):
        last = (ended_at, contact_id, contact.outcome)
        resolved_at_end = contact.outcome == RESOLVED
    first_outcome_resolved = final.first_outcome_resolved
    fcr, fcr_undecided = final.first_contact_resolved, final.fcr_undecided
    if final.contact_ids and final.contact_ids[0] == contact_id:
        first_outcome_resolved = contact.outcome == RESOLVED
        decided = contact.first_contact_resolved
        fcr, fcr_undecided = decided is True, decided is None
    if (resolved_at_end, first_outcome_resolved, fcr, fcr_undecided) == (
        final.resolved_at_end,
        final.first_outcome_resolved,
        final.first_contact_resolved,
        final.fcr_undecided,
    ):
        return None, last
    corrected = replace(
        final,
        resolved_at_end=resolved_at_end,
        first_outcome_resolved=first_outcome_resolved,
        first_contact_resolved=fcr,
        fcr_undecided=fcr_undecided,
        version=final.version + 1,
        correction=True,
    )
    return corrected, last
