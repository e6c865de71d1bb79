"""When a customer's timed work falls due, and in which order.

A customer's state machine has seven kinds of timed work: SLA warnings and
breaches, service-level settle points of ended contacts, settlements of journey
candidates, session closes, drops of idle contacts, prunes of what it
remembers, and need closes. :func:`next_work` finds
the earliest; work due at the same millisecond runs in rank order, then by key,
so the order never depends on arrival or dict order.
"""

from __future__ import annotations

from collections.abc import Container
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pipeline.core.customer import CustomerState

# Tie order of timed work due at the same millisecond: SLA first (a breach at the
# close time still belongs to the session), then a contact's service-level settle
# point (before anything can let the contact go), then settlements (their
# failures are counted in the session), then the close, then housekeeping.
RANK_SLA: Final = 0
RANK_SERVICE_LEVEL: Final = 1
RANK_SETTLE: Final = 2
RANK_CLOSE: Final = 3
RANK_DROP: Final = 4
RANK_PRUNE: Final = 5
RANK_NEED: Final = 6  # a need decides its bounce or closes after all else due then


def _end(bounds: tuple[int, int]) -> int:
    return bounds[1]


def _before(due: int, rank: int, key: str, best_due: int, best_rank: int, best_key: str) -> bool:
    """(due, rank, key) < (best_due, best_rank, best_key), element by element."""
    if due != best_due:
        return due < best_due
    if rank != best_rank:
        return rank < best_rank
    return key < best_key


def next_work(customer: CustomerState) -> tuple[int, int, str] | None:
    """(due, rank, key) of the customer's earliest piece of timed work, ties by rank then key.

    Runs per wake-up and after every timed step, so it reads due times that
    are kept current (SLA clocks, dedup expiry, the cached settlement). The
    best so far is kept in three variables, not compared as tuples: the
    compiled core compares ints and strs natively, tuples only generically.
    """
    book = customer.book
    found = False
    best_due, best_rank, best_key = 0, 0, ""
    open_sessions = book.open
    if open_sessions:
        pad = book.gap_ms + book.grace_ms + 1
        for session in open_sessions:
            due = session.reach + pad
            key = session.session_id
            if not found or _before(due, RANK_CLOSE, key, best_due, best_rank, best_key):
                found, best_due, best_rank, best_key = True, due, RANK_CLOSE, key
    in_open: Container[str] | None = None
    for contact in customer.contacts.values():
        sla_due: int | None = contact.sla.due_ms
        if sla_due is not None:
            due, rank = sla_due, RANK_SLA
        elif contact.ended_at is not None:
            if contact.settled is not None:
                continue
            due, rank = contact.ended_at + customer.rules.close_after_ms, RANK_SERVICE_LEVEL
        else:
            if in_open is None:
                in_open = book.contacts_in_open()
            if contact.contact_id in in_open:
                continue
            due, rank = contact.last_at + customer.rules.contact_retention_ms + 1, RANK_DROP
        key = contact.contact_id
        if not found or _before(due, rank, key, best_due, best_rank, best_key):
            found, best_due, best_rank, best_key = True, due, rank, key
    settle_next = customer.next_settlement()
    if settle_next is not None:
        due, key = settle_next
        if not found or _before(due, RANK_SETTLE, key, best_due, best_rank, best_key):
            found, best_due, best_rank, best_key = True, due, RANK_SETTLE, key
    closed = book.closed
    if closed:
        due = book.closed_expiry(closed[0] if len(closed) == 1 else min(closed, key=_end))
        if not found or _before(due, RANK_PRUNE, "closed", best_due, best_rank, best_key):
            found, best_due, best_rank, best_key = True, due, RANK_PRUNE, "closed"
    need_next = customer.needs.next_due() if customer.needs.open else None
    if need_next is not None:
        due, key = need_next
        if not found or _before(due, RANK_NEED, key, best_due, best_rank, best_key):
            found, best_due, best_rank, best_key = True, due, RANK_NEED, key
    dropped = customer.dropped
    if dropped:
        # Once the clock is this far past the drop, an event dated before it is late.
        due = min(at for at, _ in dropped.values()) + customer.rules.late_ms
        if not found or _before(due, RANK_PRUNE, "dropped", best_due, best_rank, best_key):
            found, best_due, best_rank, best_key = True, due, RANK_PRUNE, "dropped"
    expiry = customer.dedup.expiry_ms
    if expiry is not None and (
        not found or _before(expiry, RANK_PRUNE, "dedup", best_due, best_rank, best_key)
    ):
        found, best_due, best_rank, best_key = True, expiry, RANK_PRUNE, "dedup"
    return (best_due, best_rank, best_key) if found else None
