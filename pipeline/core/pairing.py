"""Which contact settles each of a customer's journey candidates, and when.

A candidate (:mod:`pipeline.core.switches`) settles at the start of the next
contact that can pair with it, or expires when its window passes. The customer
keeps each candidate's ``(due, next contact)`` in a dict keyed like its
candidates and updates it as contacts come, go or learn their topic, rather than
pairing every candidate with every contact again per change: these functions
build, update and read that dict.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.core.contact import Contact
from pipeline.core.records import FALSE_RESOLUTION, REPEAT, SWITCH_FAILURE
from pipeline.core.rules import CoreRules
from pipeline.core.switches import (
    Candidate,
    can_pair,
    candidate_for_end,
    need_candidate,
    next_contact,
)

#: The kinds of candidate a contact's end can leave (their keys: ``<kind>:<contact id>``).
END_CANDIDATE_KINDS = (SWITCH_FAILURE, FALSE_RESOLUTION, REPEAT)


def pair(
    candidate: Candidate, contacts: Iterable[Contact], rules: CoreRules
) -> tuple[int, Contact | None]:
    """(due, next contact): settle at the next contact's start plus
    ``rules.settle_ms`` (grace + identity hold), or expire at the end of the window
    plus that if there is none."""
    grace = rules.settle_ms
    nxt = next_contact(candidate, contacts)
    if nxt is not None:
        return nxt.started_at + grace + 1, nxt
    return candidate.ended_at + rules.window_ms(candidate.kind) + grace + 1, None


def earliest(pairs: dict[str, tuple[int, Contact | None]]) -> tuple[int, str] | None:
    """(due, key) of the earliest settlement or expiry (ties: key); None if no pair."""
    found = False
    best_due, best_key = 0, ""
    for key, (due, _) in pairs.items():
        if not found or due < best_due or (due == best_due and key < best_key):
            found, best_due, best_key = True, due, key
    return (best_due, best_key) if found else None


def offer_as_next(
    pairs: dict[str, tuple[int, Contact | None]],
    candidates: dict[str, Candidate],
    contact: Contact,
    grace_ms: int,
) -> bool:
    """A new contact, or one that just learnt its topic, may become the next contact
    of some candidates: the next contact is the earliest that can pair, so it
    replaces a candidate's next if it starts earlier (ties: contact id).

    Returns whether any pair changed.
    """
    changed = False
    started = contact.started_at
    order = (started, contact.contact_id)
    for key, (_, nxt) in pairs.items():
        if nxt is contact or not can_pair(candidates[key], contact):
            continue
        if nxt is None or order < (nxt.started_at, nxt.contact_id):
            # Replacing the value of an existing key is safe while iterating.
            pairs[key] = (started + grace_ms + 1, contact)
            changed = True
    return changed


def replace_end_candidates(
    candidates: dict[str, Candidate],
    pairs: dict[str, tuple[int, Contact | None]] | None,
    contact: Contact,
    contacts: Iterable[Contact],
    rules: CoreRules,
) -> bool:
    """An end of ``contact`` (its latest by event time) replaces the candidates an
    earlier end of it left: a switch-failure candidate, and a need candidate (false
    resolution or repeat) for its first-contact resolution. Only this contact's
    candidates change (pairing reads no end time), so other pairs stay valid.

    ``pairs`` (None: not built) is kept in step. Returns whether any candidate
    changed, i.e. whether the cached earliest settlement is stale.
    """
    changed = False
    contact_id = contact.contact_id
    if candidates:
        for kind in END_CANDIDATE_KINDS:
            key = f"{kind}:{contact_id}"
            if candidates.pop(key, None) is not None:
                changed = True
                if pairs is not None:
                    pairs.pop(key, None)
    ended_at = contact.ended_at
    assert ended_at is not None  # called for an end
    switch = candidate_for_end(
        contact_id=contact_id,
        channel=contact.channel,
        outcome=contact.outcome,
        ended_at=ended_at,
        topic=contact.topic,
    )
    need = need_candidate(
        contact_id=contact_id,
        channel=contact.channel,
        outcome=contact.outcome,
        ended_at=ended_at,
        topic=contact.topic,
        bot_only=contact.bot_only,
    )
    for new in (switch, need):
        if new is not None:
            key = f"{new.kind}:{contact_id}"
            candidates[key] = new
            if pairs is not None:
                pairs[key] = pair(new, contacts, rules)
            changed = True
    return changed


def pair_again_without(
    pairs: dict[str, tuple[int, Contact | None]],
    candidates: dict[str, Candidate],
    gone: Contact,
    contacts: Iterable[Contact],
    rules: CoreRules,
) -> bool:
    """The contact ``gone`` was let go: the candidates it was the next contact of
    pair again with the contacts still held. Returns whether any pair changed."""
    changed = False
    for key, (_, nxt) in pairs.items():
        if nxt is gone:
            # Replacing the value of an existing key is safe while iterating.
            pairs[key] = pair(candidates[key], contacts, rules)
            changed = True
    return changed
