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
    """Stable id from the customer and the event that created the session."""
    return hashlib.sha1(f"{customer_id}\x1f{event_id}".encode()).hexdigest()[:16]


class Session:
    """One open session. ``contact_ids`` is an insertion-ordered set (a dict)."""

    __slots__ = (
        "contact_ids",
        "ended_at",
        "events",
        "feedback",
        "held_until",
        "nps_at",
        "nps_event_id",
        "nps_score",
        "pending",
        "session_id",
        "started_at",
        "version",
    )

    def __init__(self, session_id: str, started_at: int, ended_at: int) -> None:
        self.session_id = session_id
        self.started_at = started_at
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
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> Session:
        session = cls(state[0], state[1], state[2])
        session.events = state[3]
        session.contact_ids = dict.fromkeys(state[4])
        session.nps_score, session.nps_at, session.nps_event_id = state[5], state[6], state[7]
        session.version = state[8]
        session.pending = state[9]
        if len(state) > 10:  # written before scores were kept: only the latest is known
            session.feedback = state[10]
        return session


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
    ) -> tuple[Session, list[Session]]:
        """Put an event into a session; returns (its session, sessions it superseded)."""
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
                    only.ended_at = occurred_at
                    return only, []
            elif occurred_at >= only.started_at:
                return only, []
            elif occurred_at + gap >= only.started_at:
                only.started_at = occurred_at
                return only, []
        hits = [s for s in open_sessions if s.started_at - gap <= occurred_at <= s.reach + gap]
        if not hits:
            session = Session(session_id_for(customer_id, event_id), occurred_at, occurred_at)
            self._insert(session)
            return session, []
        survivor = hits[0]  # self.open is sorted by start: the earliest-started wins
        superseded = hits[1:]
        for other in superseded:
            survivor.absorb(other)
            self.open.remove(other)
        if occurred_at < survivor.started_at:
            survivor.started_at = occurred_at
        elif occurred_at > survivor.ended_at:
            survivor.ended_at = occurred_at
        return survivor, superseded

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
