"""Channel-switch failures and false resolutions of one customer.

A contact that ends unresolved or abandoned becomes a *switch candidate*. Its pair
is the customer's next contact: the first one started after that end, by event
time. A next contact in another channel within the switch window is a
channel-switch failure; one in the same channel is a repeat (no signal, and if
the repeat itself fails it becomes the next candidate).

A contact that ends resolved with a topic becomes a *false-resolution candidate*;
the customer's next contact on the same topic within the window is a false
resolution.

A pair is settled only when the clock passes ``next start + grace``, so that a
contact arriving out of order within the grace can still take its place as the
next contact. Everything here is a pure function of the candidate and the
contacts; the caller owns the clock and the timers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pipeline.contract.event import ABANDONED, UNRESOLVED
from pipeline.core.records import FALSE_RESOLUTION, REPEAT, SWITCH_FAILURE, JourneySignal

FAILED_OUTCOMES = (UNRESOLVED, ABANDONED)


class ContactLike(Protocol):
    contact_id: str
    channel: str
    started_at: int
    topic: str | None


ContactT = TypeVar("ContactT", bound=ContactLike)


@dataclass(slots=True)
class Candidate:
    """A contact that ended and may yet be followed by a telling next contact.

    ``kind`` is ``switch_failure`` (ended unresolved/abandoned),
    ``false_resolution`` (ended resolved, with a topic) or ``repeat`` (a contact
    whose need is checked for a repeat but gives no signal: handled by the bot
    alone, or resolved without a topic; without a topic any next contact repeats).
    """

    kind: str
    contact_id: str
    channel: str
    outcome: str | None
    ended_at: int
    topic: str | None

    def to_state(self) -> list[Any]:
        return [self.kind, self.contact_id, self.channel, self.outcome, self.ended_at, self.topic]

    @classmethod
    def from_state(cls, state: list[Any]) -> Candidate:
        return cls(*state)


def can_pair(candidate: Candidate, contact: ContactLike) -> bool:
    """Whether ``contact`` may be the candidate's next contact: started after its end
    (and for a false-resolution or repeat candidate, on the same topic)."""
    kind = candidate.kind
    return (
        contact.started_at > candidate.ended_at
        and contact.contact_id != candidate.contact_id
        and (
            kind == SWITCH_FAILURE
            or contact.topic == candidate.topic
            or (kind == REPEAT and candidate.topic is None)
        )
    )


def next_contact(candidate: Candidate, contacts: Iterable[ContactT]) -> ContactT | None:
    """The contact this candidate pairs with: the first started after its end.

    For a false-resolution candidate only contacts on the same topic count.
    Ties on start time go to the smaller contact id, so arrival order never decides.
    """
    best: ContactT | None = None
    ended_at = candidate.ended_at
    for contact in contacts:
        # Most contacts started before the candidate ended: reject them without a call.
        if contact.started_at <= ended_at or not can_pair(candidate, contact):
            continue
        if best is None or (contact.started_at, contact.contact_id) < (
            best.started_at,
            best.contact_id,
        ):
            best = contact
    return best


def due_ms(candidate: Candidate, nxt: ContactLike | None, *, window_ms: int, grace_ms: int) -> int:
    """When to settle (a next contact is known) or expire (none yet) the candidate."""
    if nxt is not None:
        return nxt.started_at + grace_ms + 1
    return candidate.ended_at + window_ms + grace_ms + 1


def settle(
    candidate: Candidate, nxt: ContactLike, *, customer_id: str, window_ms: int
) -> JourneySignal | None:
    """The signal this pair gives, if any."""
    gap_ms = nxt.started_at - candidate.ended_at
    if gap_ms > window_ms or candidate.kind == REPEAT:
        return None
    if candidate.kind == SWITCH_FAILURE and nxt.channel == candidate.channel:
        return None  # a repeat in the same channel, not a switch
    return JourneySignal(
        signal_id=f"{candidate.contact_id}>{nxt.contact_id}:{candidate.kind}",
        kind=candidate.kind,
        customer_id=customer_id,
        from_contact_id=candidate.contact_id,
        from_channel=candidate.channel,
        from_outcome=candidate.outcome,
        to_contact_id=nxt.contact_id,
        to_channel=nxt.channel,
        gap_seconds=gap_ms / 1000,
        topic=candidate.topic if candidate.topic is not None else nxt.topic,
        occurred_at=nxt.started_at,
    )


def is_repeat(candidate: Candidate, nxt: ContactLike | None, *, window_ms: int) -> bool:
    """Whether the candidate's next contact repeats its need (within the window)."""
    return nxt is not None and nxt.started_at - candidate.ended_at <= window_ms


def need_candidate(
    *,
    contact_id: str,
    channel: str,
    outcome: str | None,
    ended_at: int,
    topic: str | None,
    bot_only: bool,
) -> Candidate | None:
    """The repeat check an ended contact needs besides :func:`candidate_for_end`'s:
    a resolved contact without a topic, or a bot-only contact that did not end
    resolved with a topic (that one has its false-resolution candidate)."""
    if outcome == "resolved" and topic is not None:
        return None
    if outcome == "resolved" or bot_only:
        return Candidate(REPEAT, contact_id, channel, outcome, ended_at, topic)
    return None


def candidate_for_end(
    *, contact_id: str, channel: str, outcome: str | None, ended_at: int, topic: str | None
) -> Candidate | None:
    """The candidate a contact's end creates, if any."""
    if outcome in FAILED_OUTCOMES:
        return Candidate(SWITCH_FAILURE, contact_id, channel, outcome, ended_at, topic)
    if outcome == "resolved" and topic is not None:
        return Candidate(FALSE_RESOLUTION, contact_id, channel, outcome, ended_at, topic)
    return None
