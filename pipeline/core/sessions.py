"""Session windows of one customer (Kafka Streams semantics, event time).

A session is a run of one customer's events whose consecutive event times are at
most ``gap`` apart (exactly ``gap`` still joins). An out-of-order event that falls
within the gap of two open sessions bridges them: the earlier-started session
survives, the other is superseded. A session closes when the partition clock
passes ``reach + gap + grace``; its bounds are kept a while afterwards so that an
event belonging to it can be recognised as late.

``reach`` is the session's last event time, or later while the session holds an
open synchronous contact (a branch visit, a call): the customer is with us until
it ends, so ``held_until`` (set by the customer's state, up to the contact's start
plus ``session.max_open_contact``) counts as if an event happened then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container
from typing import Any

from pipeline.core.records import NPS

_NO_CONTACTS: frozenset[str] = frozenset()


def _feedback_order(item: list[Any]) -> tuple[int, str]:
    return item[5], item[0]


def session_id_for(customer_id: str, event_id: str) -> str:
    """Stable id from the customer and the session's earliest event (by event time,
    ties: the smaller event id), whatever order its events arrived in."""
    return hashlib.sha1(f"{customer_id}\x1f{event_id}".encode()).hexdigest()[:16]


class Session:
    """One open session. ``contact_ids`` is an insertion-ordered set (a dict)."""

    __slots__ = (
        "contact_ids",
        "ended_at",
        "events",
        "feedback",
        "first_event_id",
        "held_until",
        "nps_at",
        "nps_event_id",
        "nps_score",
        "pending",
        "session_id",
        "started_at",
        "version",
    )

    def __init__(
        self, session_id: str, started_at: int, ended_at: int, first_event_id: str = ""
    ) -> None:
        self.session_id = session_id
        self.started_at = started_at
        # The earliest event (at started_at) the session is named after; "" in
        # state written before sessions were named so: any earlier event renames it.
        self.first_event_id = first_event_id
        self.ended_at = ended_at
        self.events = 0
        self.contact_ids: dict[str, None] = {}
        self.nps_score: int | None = None
        self.nps_at = -1
        self.nps_event_id = ""
        # Every score given in the session: [event id, contact id, channel, kind,
        # score, given at], in arrival order (records sort them by time).
        self.feedback: list[list[Any]] = []
        self.version = 0
        # Changed since the last flush_updates(): an open update is owed.
        self.pending = False
        # Open synchronous contacts count as present until this time (-1: none).
        # Not state: the customer's state derives it from its contacts on load.
        self.held_until = -1

    @property
    def reach(self) -> int:
        """The end the gap and the close are measured from."""
        return self.ended_at if self.ended_at >= self.held_until else self.held_until

    def absorb(self, other: Session) -> None:
        """Take over ``other``'s events, contacts and feedback (a bridging merge)."""
        self.started_at = min(self.started_at, other.started_at)
        self.ended_at = max(self.ended_at, other.ended_at)
        self.held_until = max(self.held_until, other.held_until)
        self.events += other.events
        for contact_id in other.contact_ids:
            self.contact_ids[contact_id] = None
        if (other.nps_at, other.nps_event_id) > (self.nps_at, self.nps_event_id):
            self.nps_score, self.nps_at = other.nps_score, other.nps_at
            self.nps_event_id = other.nps_event_id
        self.feedback.extend(other.feedback)

    def note_feedback(
        self, score: int | None, occurred_at: int, event_id: str, contact_id: str, channel: str
    ) -> None:
        """Keep every score, and the latest by event time (ties: event id) as the NPS."""
        if score is None:
            return
        self.feedback.append([event_id, contact_id, channel, NPS, score, occurred_at])
        if (occurred_at, event_id) > (self.nps_at, self.nps_event_id):
            self.nps_score, self.nps_at, self.nps_event_id = score, occurred_at, event_id

    def nps_average(self) -> float | None:
        """The mean of the session's NPS answers (None: none)."""
        scores = [item[4] for item in self.feedback if item[3] == NPS]
        return sum(scores) / len(scores) if scores else None

    def feedback_records(self) -> list[dict[str, Any]]:
        """The session's scores as output dicts, by time (ties: feedback id)."""
        items = sorted(self.feedback, key=_feedback_order)
        return [
            {
                "feedback_id": item[0],
                "contact_id": item[1],
                "channel": item[2],
                "kind": item[3],
                "score": item[4],
                "given_at": item[5],
            }
            for item in items
        ]

    def to_state(self) -> list[Any]:
        return [
            self.session_id,
            self.started_at,
            self.ended_at,
            self.events,
            list(self.contact_ids),
            self.nps_score,
            self.nps_at,
            self.nps_event_id,
            self.version,
            self.pending,
            self.feedback,
            self.first_event_id,
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> Session:
        session = cls(state[0], state[1], state[2], state[11] if len(state) > 11 else "")
        session.events = state[3]
        session.contact_ids = dict.fromkeys(state[4])
        session.nps_score, session.nps_at, session.nps_event_id = state[5], state[6], state[7]
        session.version = state[8]
        session.pending = state[9]
        if len(state) > 10:  # written before scores were kept: only the latest is known
            session.feedback = state[10]
        return session


def _start_with(session: Session, customer_id: str, event_id: str, occurred_at: int) -> str | None:
    """An event at or before the session's start: if it is the session's new earliest
    event (by time, ties: event id), the session starts at it and is named after it;
    returns the old name (None: the event is not earlier, nothing changed)."""
    if (occurred_at, event_id) >= (session.started_at, session.first_event_id):
        return None
    old = session.session_id
    session.started_at = occurred_at
    session.first_event_id = event_id
    session.session_id = session_id_for(customer_id, event_id)
    return old


class SessionBook:
    """The open sessions of one customer (sorted by start) and recently closed bounds."""

    __slots__ = ("closed", "gap_ms", "grace_ms", "open")

    def __init__(self, gap_ms: int, grace_ms: int) -> None:
        self.gap_ms = gap_ms
        self.grace_ms = grace_ms
        self.open: list[Session] = []
        # (started_at, ended_at) of closed sessions, kept until no event can
        # fall within their gap without being late by the clock rule anyway.
        self.closed: list[tuple[int, int]] = []

    def contacts_in_open(self) -> Container[str]:
        """The contact ids of the open sessions."""
        open_sessions = self.open
        if len(open_sessions) == 1:
            return open_sessions[0].contact_ids  # the common case: no set to build
        if not open_sessions:
            return _NO_CONTACTS
        return {cid for s in open_sessions for cid in s.contact_ids}

    def close_due(self, session: Session) -> int:
        """The first clock value at which ``session`` is closed."""
        return session.reach + self.gap_ms + self.grace_ms + 1

    def closed_expiry(self, bounds: tuple[int, int]) -> int:
        # Past this clock any event within the gap of these bounds is
        # already late by ``clock > occurred_at + gap + grace``.
        return bounds[1] + 2 * self.gap_ms + self.grace_ms + 1

    def late_reason(self, occurred_at: int, clock_ms: int, late_ms: int) -> str | None:
        """Why an event dated ``occurred_at`` is late at partition clock ``clock_ms``
        (it can no longer be placed in event-time order), or None if it is not."""
        # As a difference: clock and event time are mostly equal or close, so it is
        # a small int (no allocation, fast compare) where the sum is a new big int.
        if clock_ms - occurred_at > late_ms:
            return "event time is older than the session gap plus grace behind the clock"
        if self.closed and self.hits_closed(occurred_at):
            return "falls within the gap of a session that has already closed"
        return None

    def hits_closed(self, occurred_at: int) -> bool:
        """True if ``occurred_at`` is within the gap of a session that already closed."""
        gap = self.gap_ms
        # A loop, not any(<generator>): this runs per event while a session
        # is remembered as closed, and the generator cost more than the test.
        for start, end in self.closed:
            if start - gap <= occurred_at <= end + gap:
                break
        else:
            return False
        return True

    def place(
        self, customer_id: str, event_id: str, occurred_at: int
    ) -> tuple[Session, list[Session], str | None]:
        """Put an event into a session; returns (its session, sessions it superseded,
        the session's old id if the event is its new earliest and renamed it)."""
        gap = self.gap_ms
        open_sessions = self.open
        if len(open_sessions) == 1:
            # The common case: the event extends the one open session, mostly
            # at its end (events arrive roughly in time order), so that bound
            # is tested first.
            only = open_sessions[0]
            ended = only.ended_at
            if occurred_at >= ended:
                held = only.held_until
                if occurred_at - gap <= (ended if ended >= held else held):
                    if occurred_at > only.started_at:
                        only.ended_at = occurred_at
                        return only, [], None
                    # A one-instant session: the tie on the start decides its name.
                    return only, [], _start_with(only, customer_id, event_id, occurred_at)
            elif occurred_at > only.started_at:
                return only, [], None
            elif occurred_at + gap >= only.started_at:
                return only, [], _start_with(only, customer_id, event_id, occurred_at)
        hits = [s for s in open_sessions if s.started_at - gap <= occurred_at <= s.reach + gap]
        if not hits:
            session = Session(
                session_id_for(customer_id, event_id), occurred_at, occurred_at, event_id
            )
            self._insert(session)
            return session, [], None
        # The earliest-started wins (ties: the earliest first event), so the
        # survivor keeps the name of the merged journey's earliest event.
        survivor = hits[0]
        for other in hits:
            if (other.started_at, other.first_event_id) < (
                survivor.started_at,
                survivor.first_event_id,
            ):
                survivor = other
        superseded = [s for s in hits if s is not survivor]
        for other in superseded:
            survivor.absorb(other)
            self.open.remove(other)
        renamed_from: str | None = None
        if occurred_at <= survivor.started_at:
            renamed_from = _start_with(survivor, customer_id, event_id, occurred_at)
        if occurred_at > survivor.ended_at:
            survivor.ended_at = occurred_at
        return survivor, superseded, renamed_from

    def _insert(self, session: Session) -> None:
        index = len(self.open)
        while index > 0 and self.open[index - 1].started_at > session.started_at:
            index -= 1
        self.open.insert(index, session)

    def close(self, session: Session) -> None:
        self.open.remove(session)
        self.closed.append((session.started_at, session.ended_at))

    def prune_closed(self, clock_ms: int) -> None:
        # closed_expiry(b) > clock_ms, with the expiry's arithmetic moved to the clock side.
        horizon = clock_ms - 2 * self.gap_ms - self.grace_ms - 1
        self.closed = [b for b in self.closed if b[1] > horizon]

    def to_state(self) -> list[Any]:
        return [[s.to_state() for s in self.open], [list(b) for b in self.closed]]

    @classmethod
    def from_state(cls, state: list[Any], gap_ms: int, grace_ms: int) -> SessionBook:
        book = cls(gap_ms, grace_ms)
        book.open = [Session.from_state(s) for s in state[0]]
        book.closed = [(b[0], b[1]) for b in state[1]]
        return book
