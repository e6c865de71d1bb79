"""The state of one customer on one partition, and what happens to it.

:class:`CustomerState` applies one customer's events (in arrival order) and fires
its timed work (session closes, SLA due times, switch settlements, expiries) when
the partition clock reaches it. It never looks at a wall clock: the processor
passes the clock in, so a replay and the stream give the same records.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any, Final, Protocol

from pipeline.contract.event import (
    AGENT,
    BOT,
    CONTACT_ENDED,
    FEEDBACK,
    RESOLVED,
    TRANSFERRED,
    InteractionEvent,
)
from pipeline.core.dedup import DedupWindow
from pipeline.core.needs import NeedBook, NeedRules
from pipeline.core.records import (
    FALSE_RESOLUTION,
    REPEAT,
    SESSION_FINAL,
    SESSION_OPEN,
    SESSION_SUPERSEDED,
    SLA_BREACH,
    SWITCH_FAILURE,
    ContactSummary,
    LateEvent,
    OutputRecord,
    SessionRecord,
    SlaEvent,
)
from pipeline.core.retraction import cancels_breach
from pipeline.core.sessions import Session, SessionBook
from pipeline.core.switches import (
    Candidate,
    can_pair,
    candidate_for_end,
    is_repeat,
    need_candidate,
    next_contact,
    settle,
)
from pipeline.errors import StateError

MS: Final = 1000
# Version 2: contacts as flat rows with a compact SLA row, candidates without
# their (derivable) keys, seen ids as one joined string. Version 3: contacts
# also count their summaries, and final journeys that may still be corrected
# are kept ("f"). Versions 1 and 2 are still read. Contact rows of version 3
# may carry four more fields (bot, human, repeated, contained reported) and
# sessions their feedback; shorter rows read as before (nothing known).
STATE_VERSION: Final = 3

# Outcome of CustomerState.apply().
APPLIED: Final = "applied"
DUPLICATE: Final = "duplicate"
LATE: Final = "late"

# Tie order of timed work due at the same millisecond: SLA first (a breach at the
# close time still belongs to the session), then settlements (their failures are
# counted in the session), then the close, then housekeeping.
_RANK_SLA: Final = 0
_RANK_SETTLE: Final = 1
_RANK_CLOSE: Final = 2
_RANK_DROP: Final = 3
_RANK_PRUNE: Final = 4
_RANK_NEED: Final = 5  # a need closes after all else due at its millisecond
_UNKNOWN = object()


_start_order = attrgetter("started_at", "contact_id")
_NO_CONTACTS: frozenset[str] = frozenset()


def _end(bounds: tuple[int, int]) -> int:
    return bounds[1]


def _before(due: int, rank: int, key: str, best_due: int, best_rank: int, best_key: str) -> bool:
    """(due, rank, key) < (best_due, best_rank, best_key), element by element."""
    if due != best_due:
        return due < best_due
    if rank != best_rank:
        return rank < best_rank
    return key < best_key


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


@dataclass(frozen=True, slots=True)
class CoreRules:
    """The event-time rules in integer milliseconds, plus what opens SLA clocks."""

    gap_ms: int
    grace_ms: int
    switch_window_ms: int
    false_resolution_ms: int
    dedup_retention_ms: int
    policies: Sequence[Any]
    business_calendar: Any
    sla_type: Any  # a class with ContactSla's open()/from_state()
    # Channels whose open contacts keep their journey open (the customer is with
    # us until the contact ends), and for how long at most after the contact's start.
    synchronous: frozenset[str] = frozenset()
    max_open_contact_ms: int = 4 * 3600 * MS
    # How long after a warning/breach fell due a reply dated before it can still
    # retract it (pipeline/core/retraction.py); 0: never.
    retraction_window_ms: int = 0
    # Needs (pipeline/core/needs.py): the window after a need's last contact, and
    # the bounce threshold.
    need_window_ms: int = 7 * 86400 * MS
    bounce_min_contacts: int = 3
    bounce_min_channels: int = 2
    need_rules: NeedRules = field(init=False, compare=False, repr=False)
    # Derived once, read per event: an event this far behind the clock is late,
    # and a session closes this long after its last event.
    late_ms: int = field(init=False, compare=False, repr=False)
    close_after_ms: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "late_ms", self.gap_ms + self.grace_ms)
        object.__setattr__(self, "close_after_ms", self.gap_ms + self.grace_ms + 1)
        object.__setattr__(
            self,
            "need_rules",
            NeedRules(
                self.need_window_ms,
                self.grace_ms,
                self.bounce_min_contacts,
                self.bounce_min_channels,
            ),
        )

    @property
    def contact_retention_ms(self) -> int:
        # An unended, idle contact outside any open session (a web-message thread
        # waiting for the customer) is kept this long after its last event so its
        # SLA clock numbering continues; the longest window the core knows.
        return max(self.switch_window_ms, self.false_resolution_ms)

    def window_ms(self, kind: str) -> int:
        return self.switch_window_ms if kind == SWITCH_FAILURE else self.false_resolution_ms


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
        "last_at",
        "outcome",
        "repeated",
        "replied_reported",
        "session_id",
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

    def summary(self, customer_id: str) -> ContactSummary:
        """The next version of the contact's summary (call it only to send it)."""
        sla = self.sla
        self.version += 1
        first_reply_new = False
        if not self.replied_reported and sla.first_reply_seconds is not None:
            self.replied_reported = first_reply_new = True
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
            queue=sla.queue,
            team=sla.team,
        )

    def to_row(self) -> list[Any]:
        """The contact and its SLA clocks as one flat row (state version 3)."""
        return [
            self.contact_id,
            self.channel,
            self.started_at,
            self.ended_at,
            self.outcome,
            self.topic,
            self.events,
            self.last_at,
            self.session_id,
            self.sla_since,
            self.switched_into,
            self.sla.to_row(),
            self.version,
            self.replied_reported,
            self.bot,
            self.human,
            self.repeated,
            self.contained_reported,
        ]

    @classmethod
    def from_row(cls, row: list[Any], customer_id: str, rules: CoreRules) -> Contact:
        """Rebuild from :meth:`to_row`."""
        contact = cls(row[0], row[1], row[2], row[8])
        contact.ended_at, contact.outcome, contact.topic = row[3], row[4], row[5]
        contact.events, contact.last_at = row[6], row[7]
        contact.sla_since, contact.switched_into = row[9], row[10]
        contact.sla = rules.sla_type.from_row(
            row[11],
            customer_id=customer_id,
            contact_id=contact.contact_id,
            channel=contact.channel,
            policies=rules.policies,
            business_calendar=rules.business_calendar,
        )
        if len(row) > 12:  # state version 3
            contact.version, contact.replied_reported = row[12], row[13]
            if len(row) > 14:
                contact.bot, contact.human = row[14], row[15]
                contact.repeated, contact.contained_reported = row[16], row[17]
        else:
            contact.assume_summary_sent()
        return contact

    def assume_summary_sent(self) -> None:
        """For a state of version 1 or 2, which did not count summaries: an ended
        contact has sent one (with its first reply, if it had one)."""
        if self.ended_at is not None:
            self.version = 1
            self.replied_reported = self.sla.first_reply_seconds is not None

    @classmethod
    def from_state_v1(cls, state: list[Any], rules: CoreRules) -> Contact:
        """Rebuild from a version-1 state row (the SLA as :meth:`ContactSla.to_state`)."""
        contact = cls(state[0], state[1], state[2], state[8])
        contact.ended_at, contact.outcome, contact.topic = state[3], state[4], state[5]
        contact.events, contact.last_at = state[6], state[7]
        contact.sla = rules.sla_type.from_state(state[9], rules.policies, rules.business_calendar)
        contact.sla_since, contact.switched_into = state[10], state[11]
        contact.assume_summary_sent()
        return contact


class CustomerState:
    """Sessions, contacts, SLA clocks, journey candidates and seen ids of one customer."""

    __slots__ = (
        "_pairs",
        "_settle_cache",
        "book",
        "candidates",
        "contacts",
        "customer_id",
        "dedup",
        "due_hint",
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
        self.needs = NeedBook(rules.need_rules)
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
        reason = None
        # As a difference: clock and event time are mostly equal or close, so it is
        # a small int (no allocation, fast compare) where the sum is a new big int.
        if clock_ms - at > rules.late_ms:
            reason = "event time is older than the session gap plus grace behind the clock"
        elif book.closed and book.hits_closed(at):
            reason = "falls within the gap of a session that has already closed"
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

        session, superseded = book.place(self.customer_id, event.event_id, at)
        for other in superseded:
            out.append(self._record(other, SESSION_SUPERSEDED, superseded_by=session.session_id))
            for moved in self.contacts.values():
                if moved.session_id == other.session_id:
                    moved.session_id = session.session_id
                    if moved.version:
                        # Its summary named the superseded journey: name the survivor.
                        out.append(moved.summary(self.customer_id))
        session.events += 1
        session.pending = True
        due = session.reach + rules.close_after_ms
        if due < hint:
            hint = due

        contact_id = event.contact_id
        contact = self.contacts.get(contact_id)
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
            due = self._hold(session) + rules.close_after_ms
            if due < hint:
                hint = due
        # Not `due`: that name holds an int above, and the compiled core checks
        # every assignment against the variable's type.
        sla_due: int | None = contact.sla.due_ms
        if sla_due is not None and sla_due < hint:
            hint = sla_due
        if is_new or had_topic != (contact.topic is not None):
            self._offer_as_next(contact)
        if self._settle_cache is _UNKNOWN:
            settle_next = self._next_settlement()
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
        fired = sla.observe(event, clock_ms, self.rules.retraction_window_ms)
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
            # The end replaces any candidate an earlier end of this contact id
            # left. Only this contact's candidates change (pairing reads no end
            # time), so the cached settlement stays valid unless one does.
            candidates = self.candidates
            pairs = self._pairs
            contact.repeated = None
            if candidates:
                for kind in (SWITCH_FAILURE, FALSE_RESOLUTION, REPEAT):
                    key = f"{kind}:{contact.contact_id}"
                    if candidates.pop(key, None) is not None:
                        self._settle_cache = _UNKNOWN
                        if pairs is not None:
                            pairs.pop(key, None)
            candidate = candidate_for_end(
                contact_id=contact.contact_id,
                channel=contact.channel,
                outcome=contact.outcome,
                ended_at=contact.ended_at,
                topic=contact.topic,
            )
            need = need_candidate(
                contact_id=contact.contact_id,
                channel=contact.channel,
                outcome=contact.outcome,
                ended_at=contact.ended_at,
                topic=contact.topic,
                bot_only=contact.bot_only,
            )
            for new in (candidate, need):
                if new is not None:
                    key = f"{new.kind}:{contact.contact_id}"
                    candidates[key] = new
                    if pairs is not None:
                        pairs[key] = self._pair(new)
                    self._settle_cache = _UNKNOWN
            out.append(contact.summary(self.customer_id))
        elif contact.version:
            # The contact's summary was sent (it ended, or its journey closed while
            # it was open): what this event changed goes out as a new version.
            out.append(contact.summary(self.customer_id))

    def _hold(self, session: Session) -> int:
        """Recompute how long the session's open synchronous contacts hold it; its reach."""
        rules = self.rules
        synchronous = rules.synchronous
        own = self.contacts
        held = -1
        for contact_id in session.contact_ids:
            contact = own.get(contact_id)
            if contact is not None and contact.ended_at is None and contact.channel in synchronous:
                until = contact.started_at + rules.max_open_contact_ms
                if until > held:
                    held = until
        session.held_until = held
        return session.reach

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
        breaches = 0
        for record in fired:
            if record.kind == SLA_BREACH:
                breaches += 1
            elif cancels_breach(record):
                breaches -= 1
        if not breaches:
            return
        if summary and contact.version:
            out.append(contact.summary(self.customer_id))
        final = self.finals.get(contact.session_id) if self.finals else None
        if final is not None:
            corrected = replace(
                final,
                sla_breaches=final.sla_breaches + breaches,
                version=final.version + 1,
                correction=True,
            )
            self.finals[contact.session_id] = corrected
            out.append(corrected)

    # -- timed work -----------------------------------------------------------

    def _next_work(self) -> tuple[int, int, str] | None:
        """(due, rank, key) of the earliest piece of timed work, ties by rank then key.

        Runs per wake-up and after every timed step, so it reads due times that
        are kept current (SLA clocks, dedup expiry, the cached settlement). The
        best so far is kept in three variables, not compared as tuples: the
        compiled core compares ints and strs natively, tuples only generically.
        """
        book = self.book
        found = False
        best_due, best_rank, best_key = 0, 0, ""
        open_sessions = book.open
        if open_sessions:
            pad = book.gap_ms + book.grace_ms + 1
            for session in open_sessions:
                due = session.reach + pad
                key = session.session_id
                if not found or _before(due, _RANK_CLOSE, key, best_due, best_rank, best_key):
                    found, best_due, best_rank, best_key = True, due, _RANK_CLOSE, key
        in_open: Container[str] | None = None
        for contact in self.contacts.values():
            sla_due: int | None = contact.sla.due_ms
            if sla_due is not None:
                due, rank = sla_due, _RANK_SLA
            elif contact.ended_at is not None:
                continue
            else:
                if in_open is None:
                    in_open = self._contacts_in_open_sessions()
                if contact.contact_id in in_open:
                    continue
                due, rank = contact.last_at + self.rules.contact_retention_ms + 1, _RANK_DROP
            key = contact.contact_id
            if not found or _before(due, rank, key, best_due, best_rank, best_key):
                found, best_due, best_rank, best_key = True, due, rank, key
        settle_next = self._next_settlement()
        if settle_next is not None:
            due, key = settle_next
            if not found or _before(due, _RANK_SETTLE, key, best_due, best_rank, best_key):
                found, best_due, best_rank, best_key = True, due, _RANK_SETTLE, key
        closed = book.closed
        if closed:
            due = book.closed_expiry(closed[0] if len(closed) == 1 else min(closed, key=_end))
            if not found or _before(due, _RANK_PRUNE, "closed", best_due, best_rank, best_key):
                found, best_due, best_rank, best_key = True, due, _RANK_PRUNE, "closed"
        need_next = self.needs.next_close() if self.needs.open else None
        if need_next is not None:
            due, key = need_next
            if not found or _before(due, _RANK_NEED, key, best_due, best_rank, best_key):
                found, best_due, best_rank, best_key = True, due, _RANK_NEED, key
        expiry = self.dedup.expiry_ms
        if expiry is not None and (
            not found or _before(expiry, _RANK_PRUNE, "dedup", best_due, best_rank, best_key)
        ):
            found, best_due, best_rank, best_key = True, expiry, _RANK_PRUNE, "dedup"
        return (best_due, best_rank, best_key) if found else None

    def _next_settlement(self) -> tuple[int, str] | None:
        """(due, key) of the earliest settlement or expiry of a candidate (cached)."""
        cached = self._settle_cache
        if cached is not _UNKNOWN:
            return cached  # type: ignore[return-value]
        pairs = self._pairs
        if pairs is None:
            pairs = self._pairs = {key: self._pair(c) for key, c in self.candidates.items()}
        found = False
        best_due, best_key = 0, ""
        for key, (due, _) in pairs.items():
            if not found or due < best_due or (due == best_due and key < best_key):
                found, best_due, best_key = True, due, key
        best = (best_due, best_key) if found else None
        self._settle_cache = best
        return best

    def _pair(self, candidate: Candidate) -> tuple[int, Contact | None]:
        """(due, next contact): settle at the next contact's start plus grace, or
        expire at the end of the window plus grace if there is none."""
        grace = self.rules.grace_ms
        nxt = next_contact(candidate, self.contacts.values())
        if nxt is not None:
            return nxt.started_at + grace + 1, nxt
        return candidate.ended_at + self.rules.window_ms(candidate.kind) + grace + 1, None

    def _offer_as_next(self, contact: Contact) -> None:
        """A new contact, or one that just learnt its topic, may become the next contact
        of some candidates: the next contact is the earliest that can pair, so it
        replaces a candidate's next if it starts earlier (ties: contact id)."""
        pairs = self._pairs
        if pairs is None:
            return  # built from scratch when next asked for
        candidates = self.candidates
        started = contact.started_at
        order = (started, contact.contact_id)
        for key, (_, nxt) in pairs.items():
            if nxt is contact or not can_pair(candidates[key], contact):
                continue
            if nxt is None or order < (nxt.started_at, nxt.contact_id):
                # Replacing the value of an existing key is safe while iterating.
                pairs[key] = (started + self.rules.grace_ms + 1, contact)
                self._settle_cache = _UNKNOWN

    def _drop_contact(self, contact_id: str) -> None:
        """Forget a contact; the candidates it was the next contact of pair again."""
        contact = self.contacts.pop(contact_id)
        if self.finals and contact.session_id in self.finals:
            self._keep_final_if_correctable(contact.session_id)
        pairs = self._pairs
        if pairs is None:
            return
        for key, (_, nxt) in pairs.items():
            if nxt is contact:
                pairs[key] = self._pair(self.candidates[key])
                self._settle_cache = _UNKNOWN

    def next_due(self) -> int | None:
        """The earliest clock value at which this customer has timed work."""
        work = self._next_work()
        return work[0] if work is not None else None

    def fire_until(self, limit_ms: int, out: list[OutputRecord]) -> tuple[bool, int | None]:
        """Do all timed work due at or before ``limit_ms``, in due order.

        Returns (whether anything ran, the next due time afterwards).
        """
        fired = False
        while True:
            work = self._next_work()
            if work is None:
                return fired, None
            due, rank, key = work
            if due > limit_ms:
                return fired, due
            fired = True
            if rank == _RANK_SLA:
                contact = self.contacts[key]
                fired_sla = contact.sla.fire_due(due)
                out.extend(fired_sla)
                self._correct_journey(contact, fired_sla, out, True)
                self.needs.refresh(contact)
                if contact.sla.is_idle:
                    contact.sla_since = None
            elif rank == _RANK_SETTLE:
                self._settle(key, out)
            elif rank == _RANK_CLOSE:
                for session in self.book.open:
                    if session.session_id == key:
                        self._close(session, out)
                        break
            elif rank == _RANK_DROP:
                self._drop_contact(key)
            elif rank == _RANK_NEED:
                self.needs.close(self.customer_id, key, due, out)
            elif key == "closed":
                self.book.prune_closed(due)
            else:
                self.dedup.prune(due)

    def _settle(self, key: str, out: list[OutputRecord]) -> None:
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
                candidate.contact_id, is_repeat(candidate, nxt, window_ms=window_ms), out
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

    def _decide_need(self, contact_id: str, repeated: bool, out: list[OutputRecord]) -> None:
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
        final = self.finals.get(contact.session_id) if self.finals else None
        if final is not None and final.contact_ids and final.contact_ids[0] == contact_id:
            fcr = contact.first_contact_resolved
            corrected = replace(
                final,
                first_contact_resolved=fcr is True,
                fcr_undecided=fcr is None,
                version=final.version + 1,
                correction=True,
            )
            self.finals[contact.session_id] = corrected
            out.append(corrected)
        if (
            contact.ended_at is not None
            and contact.sla.is_idle
            and contact_id not in self._contacts_in_open_sessions()
        ):
            self._drop_contact(contact_id)

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

    def _close(self, session: Session, out: list[OutputRecord]) -> None:
        contacts = self._session_contacts(session)
        final = self._record(session, SESSION_FINAL, contacts)
        out.append(final)
        self.book.close(session)
        self.finals[session.session_id] = final
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
                    in_open = self._contacts_in_open_sessions()
                if contact_id not in in_open:
                    self._drop_contact(contact_id)
        self._keep_final_if_correctable(session.session_id)

    def finish(self, out: list[OutputRecord]) -> None:
        """End of input: settle candidates that have a next contact, close every session."""
        for key in sorted(self.candidates):
            if next_contact(self.candidates[key], self.contacts.values()) is not None:
                self._settle(key, out)
        for session in list(self.book.open):
            self._close(session, out)
        self.needs.finish(self.customer_id, out)

    # -- records and queries -------------------------------------------------------

    def _contacts_in_open_sessions(self) -> Container[str]:
        open_sessions = self.book.open
        if len(open_sessions) == 1:
            return open_sessions[0].contact_ids  # the common case: no set to build
        if not open_sessions:
            return _NO_CONTACTS
        return {cid for s in open_sessions for cid in s.contact_ids}

    def _session_contacts(self, session: Session) -> list[Contact]:
        """The session's contacts still held, by start time (ties: contact id)."""
        own = self.contacts
        contacts = [own[c] for c in session.contact_ids if c in own]
        if len(contacts) > 1:
            contacts.sort(key=_start_order)
        return contacts

    def _record(
        self,
        session: Session,
        status: str,
        contacts: list[Contact] | None = None,
        superseded_by: str | None = None,
    ) -> SessionRecord:
        """The session's record; ``contacts`` is :meth:`_session_contacts` if the caller has it.

        The journey counts the contacts that started in it (``session_id``), so its
        contacts and breaches equal the contact rows and SLA events behind it; a
        thread that goes on in a later journey stays with the one it started in.
        """
        if contacts is None:
            contacts = self._session_contacts(session)
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
            customer_id=self.customer_id,
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

    def pending_updates(self) -> list[SessionRecord]:
        """Open records of the sessions changed since the last call."""
        return [self._record(s, SESSION_OPEN) for s in self.book.open if s.pending]

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
    def is_empty(self) -> bool:
        """Nothing open, running, pending or remembered: the state can be deleted."""
        return not (
            self.book.open
            or self.book.closed
            or self.contacts
            or self.candidates
            or self.finals
            or self.needs.open
            or len(self.dedup)
        )

    def running_sla_clocks(self) -> list[tuple[str, int]]:
        """(channel, clock start) of every contact with a running SLA clock."""
        return [(c.channel, c.sla_since) for c in self.contacts.values() if c.sla_since is not None]

    # -- state ------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot, :data:`STATE_VERSION` (see :meth:`from_state`)."""
        return {
            "v": STATE_VERSION,
            "b": self.book.to_state(),
            "k": [c.to_row() for c in self.contacts.values()],
            "w": [c.to_state() for c in self.candidates.values()],
            "d": self.dedup.to_state(),
            "f": [final.to_dict() for final in self.finals.values()],
            # Open needs; a state written before needs has none (still version 3).
            "n": self.needs.to_state(),
        }

    @classmethod
    def from_state(cls, customer_id: str, state: dict[str, Any], rules: CoreRules) -> CustomerState:
        """Rebuild from :meth:`to_state` of this or of an earlier state version.

        Version 1 (contacts with the SLA as a keyed dict, candidates with their
        keys, seen ids as ``[id, time]`` pairs) is still read, so a changelog
        written before version 2 restores without a rebuild.
        """
        version = state["v"]
        if version not in (1, 2, STATE_VERSION):
            # errors.py has no state error yet (the lead owns it): the base class.
            raise StateError(f"customer state version {version!r} is not known")
        customer = cls(customer_id, rules)
        customer.book = SessionBook.from_state(state["b"], rules.gap_ms, rules.grace_ms)
        contacts = customer.contacts
        if version == 1:
            for raw in state["k"]:
                contact = Contact.from_state_v1(raw, rules)
                contacts[contact.contact_id] = contact
            customer.candidates = {key: Candidate.from_state(raw) for key, raw in state["w"]}
            customer.dedup = DedupWindow.from_pairs(state["d"], rules.dedup_retention_ms)
        else:
            for raw in state["k"]:
                contact = Contact.from_row(raw, customer_id, rules)
                contacts[contact.contact_id] = contact
            for raw in state["w"]:
                candidate = Candidate.from_state(raw)
                customer.candidates[f"{candidate.kind}:{candidate.contact_id}"] = candidate
            customer.dedup = DedupWindow.from_state(state["d"], rules.dedup_retention_ms)
        for raw in state.get("f", ()):
            final = SessionRecord(**raw)
            customer.finals[final.session_id] = final
        customer.needs = NeedBook.from_state(state.get("n", []), rules.need_rules)
        if rules.synchronous:
            for session in customer.book.open:
                customer._hold(session)
        return customer
