"""The state of one customer on one partition, and what happens to it.

:class:`CustomerState` applies one customer's events (in arrival order) and fires
its timed work (session closes, SLA due times, switch settlements, expiries) when
the partition clock reaches it. It never looks at a wall clock: the processor
passes the clock in, so a replay and the stream give the same records. It is the
core's :class:`pipeline.core.logic.CustomerLogic`; its contacts are in
:mod:`pipeline.core.contact`, the order of its timed work in
:mod:`pipeline.core.timed_work`, its journey records in :mod:`pipeline.core.journey`
and its stored form in :mod:`pipeline.core.state_codec`.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any, Final

from pipeline.contract.event import (
    AGENT,
    BOT,
    CONTACT_ENDED,
    FEEDBACK,
    TRANSFERRED,
    InteractionEvent,
)
from pipeline.core.contact import Contact, forget_dropped, note_identified
from pipeline.core.dedup import DedupWindow
from pipeline.core.journey import (
    EndKey,
    correct_final,
    correct_late_end,
    hold_for_open_contacts,
    journey_record,
    net_breaches,
    remember_last_end,
    session_contacts,
    supersede_journey,
)
from pipeline.core.needs import NeedBook
from pipeline.core.pairing import (
    earliest,
    offer_as_next,
    pair,
    pair_again_without,
    replace_end_candidates,
)
from pipeline.core.records import (
    FALSE_RESOLUTION,
    REPEAT,
    SESSION_FINAL,
    SESSION_OPEN,
    SWITCH_FAILURE,
    LateEvent,
    OutputRecord,
    SessionRecord,
    SlaEvent,
)
from pipeline.core.rules import CoreRules
from pipeline.core.sessions import Session, SessionBook
from pipeline.core.state_codec import customer_to_state, restore_customer
from pipeline.core.switches import (
    Candidate,
    is_repeat,
    next_contact,
    settle,
)
from pipeline.core.timed_work import (
    RANK_CLOSE,
    RANK_DROP,
    RANK_NEED,
    RANK_SERVICE_LEVEL,
    RANK_SETTLE,
    RANK_SLA,
    next_work,
)

# Outcome of CustomerState.apply().
APPLIED: Final = "applied"
DUPLICATE: Final = "duplicate"
LATE: Final = "late"

_UNKNOWN = object()


class CustomerState:
    """Sessions, contacts, SLA clocks, journey candidates and seen ids of one customer."""

    __slots__ = (
        "_identified_next",
        "_pairs",
        "_settle_cache",
        "book",
        "candidates",
        "contacts",
        "customer_id",
        "dedup",
        "dropped",
        "due_hint",
        "final_ends",
        "finals",
        "needs",
        "rules",
        "wake",
    )

    def __init__(self, customer_id: str, rules: CoreRules) -> None:
        self.customer_id = customer_id
        self.rules = rules
        self.book = SessionBook(rules.gap_ms, rules.grace_ms)
        self.contacts: dict[str, Contact] = {}
        self.dedup = DedupWindow(rules.dedup_retention_ms)
        self.candidates: dict[str, Candidate] = {}
        # session id -> the last final record of a closed journey one of whose
        # contacts is still held: a breach of that contact corrects the journey.
        self.finals: dict[str, SessionRecord] = {}
        # session id -> the latest contact end such a final record counted.
        self.final_ends: dict[str, EndKey] = {}
        self.needs = NeedBook(rules.need_rules)
        # contact id -> (clock when it was let go, the contact): an event of it dated
        # before that can still come (less than gap + grace behind the clock); in
        # event-time order it found the contact held, so it brings it back.
        self.dropped: dict[str, tuple[int, Contact]] = {}
        # The due time this customer is registered under in the processor's
        # timer heap (None: not registered). Not state: rebuilt on load.
        self.wake: int | None = None
        # After apply() of an event that was not a duplicate: the earliest due
        # time of the work the event created or moved earlier (None: nothing).
        # Everything else can only have moved later, so the processor need not
        # rescan the whole state per event.
        self.due_hint: int | None = None
        # Candidate key -> (due, next contact or None) of each candidate, kept
        # up to date as contacts come, go or learn their topic, so a change
        # need not pair every candidate with every contact again (None: not
        # built yet). Not state: rebuilt on load.
        self._pairs: dict[str, tuple[int, Contact | None]] | None = None
        # (due, key) of the earliest settlement, None if no candidate, _UNKNOWN
        # after a change of a pair.
        self._settle_cache: tuple[int, str] | object | None = _UNKNOWN
        # (contact id, identified at) of the next event identity gives, for a
        # contact it will create (see identified()). Not state: used at once.
        self._identified_next: tuple[str, int] | None = None

    # -- events -------------------------------------------------------------

    def apply(self, event: InteractionEvent, clock_ms: int, out: list[OutputRecord]) -> str:
        """Apply one event at partition clock ``clock_ms``; returns APPLIED, DUPLICATE or LATE."""
        at = event.occurred_at
        dedup = self.dedup
        if dedup.check_and_add(event.event_id, at, clock_ms):
            return DUPLICATE
        rules = self.rules
        # Seeing the id may have moved the prune of seen ids earlier. The window
        # keeps that due time current (an attribute read, not two big-int sums),
        # and it is never None once the window holds an id.
        hint: int = dedup.expiry_ms  # type: ignore[assignment]
        book = self.book
        reason = book.late_reason(at, clock_ms, rules.late_ms)
        if reason is not None:
            out.append(
                LateEvent(
                    event_id=event.event_id,
                    customer_id=self.customer_id,
                    occurred_at=at,
                    clock_at=clock_ms,
                    reason=reason,
                    event=event.to_json_dict(),
                )
            )
            self.due_hint = hint
            return LATE

        session, superseded, renamed_from = book.place(self.customer_id, event.event_id, at)
        if renamed_from is not None:
            # An earlier event became the journey's first (journeys are named after
            # their earliest event, so the name does not depend on arrival order):
            # the old name is superseded by the new, even if no record was sent
            # under it, since whether one was depends on when the worker flushed.
            new_id = session.session_id
            session.session_id = renamed_from
            supersede_journey(self.customer_id, session, new_id, self.contacts, out)
            session.session_id = new_id
        for other in superseded:
            supersede_journey(self.customer_id, other, session.session_id, self.contacts, out)
        session.events += 1
        session.pending = True
        due = session.reach + rules.close_after_ms
        if due < hint:
            hint = due

        contact_id = event.contact_id
        contact = self.contacts.get(contact_id)
        if contact is None and self.dropped:
            contact = self._bring_back(contact_id, at)
        kind = event.type
        is_new = False
        if kind == FEEDBACK:
            # Feedback often comes after the contact ended, even in a later
            # session: it scores the session but neither opens nor joins a contact.
            session.note_feedback(event.score, at, event.event_id, contact_id, event.channel)
            self.needs.note_feedback(contact_id, event.score)
            if contact is None:
                self.due_hint = hint
                return APPLIED
        else:
            if contact is None:
                is_new = True
                contact = Contact(contact_id, event.channel, at, session.session_id)
                contact.sla = rules.sla_type.open(
                    customer_id=self.customer_id,
                    contact_id=contact_id,
                    channel=event.channel,
                    policies=rules.policies,
                    business_calendar=rules.business_calendar,
                )
                self.contacts[contact_id] = contact
                identified_next = self._identified_next
                if identified_next is not None and identified_next[0] == contact_id:
                    contact.identified_at = contact.sla.identified_at = identified_next[1]
            elif at < contact.started_at:
                contact.started_at = at
                contact.session_id = session.session_id
                # Rare: the contact may now pair with other candidates, or no
                # longer with some; pair them all again.
                self._pairs = None
                self._settle_cache = _UNKNOWN
            session.contact_ids[contact_id] = None
        had_topic = contact.topic is not None
        self._apply_to_contact(contact, event, clock_ms, out)
        need_due = self.needs.place(
            self.customer_id, contact, event.need_id, event.handling_seconds, out
        )
        if need_due is not None and need_due < hint:
            hint = need_due
        synchronous = rules.synchronous
        if synchronous and contact.channel in synchronous:
            # The contact may have opened, ended or started earlier: its journey's
            # reach (and so its close) moves, possibly earlier than registered.
            due = hold_for_open_contacts(session, self.contacts, rules) + rules.close_after_ms
            if due < hint:
                hint = due
        # Not `due`: that name holds an int above, and the compiled core checks
        # every assignment against the variable's type.
        sla_due: int | None = contact.sla.due_ms
        if sla_due is not None and sla_due < hint:
            hint = sla_due
        if contact.settled is None and contact.ended_at is not None:
            settle_at: int = contact.ended_at + rules.close_after_ms
            if settle_at < hint:
                hint = settle_at
        if is_new or had_topic != (contact.topic is not None):
            self._offer_as_next(contact)
        if self._settle_cache is _UNKNOWN:
            settle_next = self.next_settlement()
            if settle_next is not None and settle_next[0] < hint:
                hint = settle_next[0]
        self.due_hint = hint
        return APPLIED

    def _apply_to_contact(
        self, contact: Contact, event: InteractionEvent, clock_ms: int, out: list[OutputRecord]
    ) -> None:
        at = event.occurred_at
        contact.events += 1
        actor = event.actor
        if actor == BOT:
            contact.bot = True
        elif actor == AGENT or event.type == TRANSFERRED:
            contact.human = True
        if at > contact.last_at:
            contact.last_at = at
        if contact.topic is None and event.topic is not None:
            contact.topic = event.topic
        sla = contact.sla
        was_idle = sla.is_idle
        rules = self.rules
        window_ms = (
            rules.retraction_window_ms
            if event.identifier_kind is None
            else rules.identifier_retraction_window_ms
        )
        fired = sla.observe(event, clock_ms, window_ms)
        if fired:
            out.extend(fired)
            # The summary goes again below, with this event in it.
            self._correct_journey(contact, fired, out, False)
        if sla.is_idle:
            contact.sla_since = None
        elif was_idle:
            contact.sla_since = at
        if event.type == CONTACT_ENDED:
            # Two ends of one contact: the later wins, a tie goes by outcome text,
            # so arrival order never decides.
            if contact.ended_at is None or (at, event.outcome or "") > (
                contact.ended_at,
                contact.outcome or "",
            ):
                contact.ended_at, contact.outcome = at, event.outcome
                if self.finals and contact.session_id in self.finals:
                    correct_late_end(self.finals, self.final_ends, contact, out)
            contact.repeated = None
            if replace_end_candidates(
                self.candidates, self._pairs, contact, self.contacts.values(), self.rules
            ):
                self._settle_cache = _UNKNOWN
            out.append(contact.summary(self.customer_id))
        elif contact.version:
            # The contact's summary was sent (it ended, or its journey closed while
            # it was open): what this event changed goes out as a new version.
            out.append(contact.summary(self.customer_id))

    def _correct_journey(
        self, contact: Contact, fired: list[SlaEvent], out: list[OutputRecord], summary: bool
    ) -> None:
        """Breaches (or retracted breaches) of a contact whose records were already
        sent: send them again.

        The summary goes again if one was sent; the final record of the journey
        the contact started in goes again if that journey has closed (the
        journey's ``sla_breaches`` counts the breaches of its own contacts, net
        of retractions).
        """
        breaches = net_breaches(fired)
        if not breaches:
            return
        if summary and contact.version:
            out.append(contact.summary(self.customer_id))
        if self.finals:
            correct_final(self.finals, contact.session_id, out, breaches=breaches)

    # -- timed work -----------------------------------------------------------

    def next_settlement(self) -> tuple[int, str] | None:
        """(due, key) of the earliest settlement or expiry of a candidate (cached)."""
        cached = self._settle_cache
        if cached is not _UNKNOWN:
            return cached  # type: ignore[return-value]
        pairs = self._pairs
        if pairs is None:
            held, rules = self.contacts.values(), self.rules
            pairs = self._pairs = {key: pair(c, held, rules) for key, c in self.candidates.items()}
        best = earliest(pairs)
        self._settle_cache = best
        return best

    def _offer_as_next(self, contact: Contact) -> None:
        """See :func:`pipeline.core.pairing.offer_as_next`."""
        pairs = self._pairs
        if pairs is None:
            return  # built from scratch when next asked for
        if offer_as_next(pairs, self.candidates, contact, self.rules.settle_ms):
            self._settle_cache = _UNKNOWN

    def _drop_contact(self, contact_id: str, out: list[OutputRecord], at: int | None) -> None:
        """Let a contact go at clock ``at``; the candidates it was the next contact of
        pair again. It settles first if it has not (an unended contact the core lets
        go, or any contact at the end of input). It is kept aside until an event
        dated before ``at`` would be late (None: the input ended, nothing comes)."""
        contact = self.contacts.pop(contact_id)
        if contact.settled is None:
            out.append(contact.settle(self.customer_id))
        if at is not None:
            self.dropped[contact_id] = (at, contact)
        if self.finals and contact.session_id in self.finals:
            self._keep_final_if_correctable(contact.session_id)
        pairs = self._pairs
        if pairs is not None and pair_again_without(
            pairs, self.candidates, contact, self.contacts.values(), self.rules
        ):
            self._settle_cache = _UNKNOWN

    def _bring_back(self, contact_id: str, at: int) -> Contact | None:
        """The contact let go after ``at`` (an event of it dated ``at`` arrived late),
        held again as in event-time order; None if there is none."""
        kept = self.dropped.get(contact_id)
        if kept is None or at >= kept[0]:
            return None
        del self.dropped[contact_id]
        contact = kept[1]
        self.contacts[contact_id] = contact
        # Rare: pair every candidate again with the contact back.
        self._pairs = None
        self._settle_cache = _UNKNOWN
        return contact

    def identified(self, contact_id: str, at: int, out: list[OutputRecord]) -> None:
        """The next event (of ``contact_id``) comes from identity, through a link that
        starts at ``at``. Called before the event is applied, so that every record
        the event makes (an SLA warning fired on its arrival) carries the link: the
        sink orders two customers' records of a moved contact by it."""
        contact = self.contacts.get(contact_id)
        if contact is None:
            self._identified_next = (contact_id, at)  # for the contact the event creates
            return
        self._identified_next = None
        note_identified(contact, at, self.customer_id, out)

    def identified_done(self) -> None:
        """The event :meth:`identified` announced was applied (or was a duplicate)."""
        self._identified_next = None

    def next_due(self) -> int | None:
        """The earliest clock value at which this customer has timed work."""
        work = next_work(self)
        return work[0] if work is not None else None

    def fire_until(self, limit_ms: int, out: list[OutputRecord]) -> tuple[bool, int | None]:
        """Do all timed work due at or before ``limit_ms``, in due order.

        Returns (whether anything ran, the next due time afterwards).
        """
        fired = False
        while True:
            work = next_work(self)
            if work is None:
                return fired, None
            due, rank, key = work
            if due > limit_ms:
                return fired, due
            fired = True
            if rank == RANK_SLA:
                contact = self.contacts[key]
                fired_sla = contact.sla.fire_due(due)
                out.extend(fired_sla)
                self._correct_journey(contact, fired_sla, out, True)
                self.needs.refresh(contact)
                if contact.sla.is_idle:
                    contact.sla_since = None
            elif rank == RANK_SERVICE_LEVEL:
                out.append(self.contacts[key].settle(self.customer_id))
            elif rank == RANK_SETTLE:
                self._settle(key, out, due)
            elif rank == RANK_CLOSE:
                for session in self.book.open:
                    if session.session_id == key:
                        self._close(session, out, due)
                        break
            elif rank == RANK_DROP:
                self._drop_contact(key, out, due)
            elif rank == RANK_NEED:
                self.needs.fire(self.customer_id, key, due, out)
            elif key == "closed":
                self.book.prune_closed(due)
            elif key == "dropped":
                forget_dropped(self.dropped, due - self.rules.late_ms)
            else:
                self.dedup.prune(due)

    def _settle(self, key: str, out: list[OutputRecord], at: int | None) -> None:
        candidate = self.candidates.pop(key)
        pair = self._pairs.pop(key, None) if self._pairs is not None else None
        self._settle_cache = _UNKNOWN
        # The pair's next contact is kept current as contacts come, go or learn
        # their topic, so it is the one next_contact() would find; pair only
        # when no pairs are built.
        nxt = pair[1] if pair is not None else next_contact(candidate, self.contacts.values())
        window_ms = self.rules.window_ms(candidate.kind)
        if candidate.kind != SWITCH_FAILURE:
            self._decide_need(
                candidate.contact_id, is_repeat(candidate, nxt, window_ms=window_ms), out, at
            )
        if nxt is None:
            return  # the window passed with no next contact
        signal = settle(candidate, nxt, customer_id=self.customer_id, window_ms=window_ms)
        if signal is not None:
            out.append(signal)
            if candidate.kind == SWITCH_FAILURE:
                self.contacts[nxt.contact_id].switched_into = True
                self.needs.refresh(nxt)

    def _need_pending(self, contact_id: str) -> bool:
        """The contact's need waits for its repeat check (it is held until then)."""
        candidates = self.candidates
        return bool(candidates) and (
            f"{FALSE_RESOLUTION}:{contact_id}" in candidates
            or f"{REPEAT}:{contact_id}" in candidates
        )

    def _decide_need(
        self, contact_id: str, repeated: bool, out: list[OutputRecord], at: int | None
    ) -> None:
        """The repeat check of a contact's need is over: send the contact again, and
        the final journey it was the first contact of; then forget the contact if
        nothing else holds it."""
        contact = self.contacts.get(contact_id)
        if contact is None:
            return  # a state of an earlier version did not hold it: nothing to correct
        contact.repeated = repeated
        self.needs.refresh(contact)
        customer_id = self.customer_id
        out.append(contact.summary(customer_id))
        if self.finals:
            correct_final(
                self.finals,
                contact.session_id,
                out,
                first_contact=contact_id,
                fcr=contact.first_contact_resolved,
            )
        if (
            contact.ended_at is not None
            and contact.sla.is_idle
            and contact_id not in self.book.contacts_in_open()
        ):
            self._drop_contact(contact_id, out, at)

    def _keep_final_if_correctable(self, session_id: str) -> None:
        """Keep a closed journey's final record only while a contact that started in
        it is held unended (only such a contact can still breach) or waits for the
        repeat check of its need (its FCR can still change)."""
        for contact in self.contacts.values():
            if contact.session_id == session_id and (
                contact.ended_at is None or self._need_pending(contact.contact_id)
            ):
                return
        self.finals.pop(session_id, None)
        self.final_ends.pop(session_id, None)

    def _close(self, session: Session, out: list[OutputRecord], at: int | None) -> None:
        contacts = session_contacts(session, self.contacts)
        final = journey_record(self.customer_id, session, SESSION_FINAL, contacts, None)
        out.append(final)
        self.book.close(session)
        self.finals[session.session_id] = final
        remember_last_end(self.final_ends, session.session_id, contacts)
        customer_id = self.customer_id
        for open_contact in contacts:
            if open_contact.ended_at is None:
                out.append(open_contact.summary(customer_id))
        # Ended, idle contacts of the session go, unless another open session has them.
        own = self.contacts
        in_open: Container[str] | None = None
        for contact_id in session.contact_ids:
            contact = own.get(contact_id)
            if (
                contact is not None
                and contact.ended_at is not None
                and contact.sla.is_idle
                and not self._need_pending(contact_id)
            ):
                if in_open is None:
                    in_open = self.book.contacts_in_open()
                if contact_id not in in_open:
                    self._drop_contact(contact_id, out, at)
        self._keep_final_if_correctable(session.session_id)

    def finish(self, out: list[OutputRecord]) -> None:
        """End of input: settle candidates that have a next contact, close every session."""
        for key in sorted(self.candidates):
            if next_contact(self.candidates[key], self.contacts.values()) is not None:
                self._settle(key, out, None)
        for session in list(self.book.open):
            self._close(session, out, None)
        # Nothing can change an ended contact now: it settles.
        for contact in self.contacts.values():
            if contact.settled is None and contact.ended_at is not None:
                out.append(contact.settle(self.customer_id))
        self.needs.finish(self.customer_id, out)

    # -- records and queries -------------------------------------------------------

    def pending_updates(self) -> list[SessionRecord]:
        """Open records of the sessions changed since the last call."""
        customer_id, own = self.customer_id, self.contacts
        return [
            journey_record(customer_id, s, SESSION_OPEN, session_contacts(s, own), None)
            for s in self.book.open
            if s.pending
        ]

    @property
    def has_pending(self) -> bool:
        # A loop, not any(<generator>): read after every timed step.
        for session in self.book.open:
            if session.pending:
                break
        else:
            return False
        return True

    @property
    def has_open_work(self) -> bool:
        """Open sessions or unsettled candidates: what :meth:`finish` acts on."""
        return bool(self.book.open or self.candidates)

    @property
    def open_session_count(self) -> int:
        return len(self.book.open)

    @property
    def is_empty(self) -> bool:
        """Nothing open, running, pending or remembered: the state can be deleted."""
        return not (
            self.book.open
            or self.book.closed
            or self.contacts
            or self.candidates
            or self.finals
            or self.dropped
            or self.needs.open
            or len(self.dedup)
        )

    def running_sla_clocks(self) -> list[tuple[str, int]]:
        """(channel, clock start) of every contact with a running SLA clock."""
        return [(c.channel, c.sla_since) for c in self.contacts.values() if c.sla_since is not None]

    # -- state ------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot (:func:`pipeline.core.state_codec.customer_to_state`)."""
        return customer_to_state(self)

    @classmethod
    def from_state(cls, customer_id: str, state: dict[str, Any], rules: CoreRules) -> CustomerState:
        """Rebuild from :meth:`to_state` of this or of an earlier state version
        (:func:`pipeline.core.state_codec.restore_customer`)."""
        customer = cls(customer_id, rules)
        restore_customer(customer, state)
        if rules.synchronous:
            for session in customer.book.open:
                hold_for_open_contacts(session, customer.contacts, rules)
        return customer
