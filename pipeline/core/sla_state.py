"""The stored form of a contact's SLA clocks (:class:`pipeline.core.sla.ContactSla`).

Two forms: ``to_state``/``load_state``, named fields, for tests and tools; and
``to_row``/``load_row``, positional and compact, for the customer's state in the
changelog (written per changed customer per batch, so its size and encoding
time count). Rows written by older versions (10 and 13 fields) still load.
Kept apart from the clocks' rules so each module stays readable; it reads and
writes the ``ContactSla`` fields it stores directly, as its stored form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline.core.sla_clock import Clock
from pipeline.core.sla_policy import Policy, selection_for

if TYPE_CHECKING:
    from pipeline.core.sla import ContactSla

#: Version of the named form (``to_state``).
STATE_VERSION = 1


def to_state(sla: ContactSla) -> dict[str, Any]:
    """A JSON-able snapshot (str/int/float/bool/None/list/dict only)."""
    return {
        "v": STATE_VERSION,
        "customer_id": sla.customer_id,
        "contact_id": sla.contact_id,
        "channel": sla.channel,
        "topic": sla.topic,
        "clocks": [clock.to_state() for clock in sla._clocks],
        "seqs": dict(sla._seqs) if sla._seqs else {},
        "first_started_at": sla._first_started_at,
        "replied_since_customer": sla._replied_since_customer,
        "ended": sla._ended,
        "first_reply_at": sla.first_reply_at,
        "first_reply_seconds": sla.first_reply_seconds,
        "first_reply_business_seconds": sla.first_reply_business_seconds,
        "breached": sla.breached,
        "breaches": sla.breaches,
        "ended_at": sla._ended_at,
        "early_replies": [list(pair) for pair in sla._early_replies or ()],
        "answered": [[*clock.to_state(), at] for clock, at in sla._answered or ()],
    }


def to_row(sla: ContactSla) -> list[Any]:
    """A compact JSON-able snapshot for the customer's state (see :meth:`from_row`).

    Unlike :meth:`to_state` it leaves out what the owning contact already
    stores (customer, contact, channel) and names no fields: it is written
    per changed customer per batch, so its size and encoding time count.
    """
    clocks: list[Any] = []
    for clock in sla._clocks:
        clocks += (
            clock.policy.spec.name,
            clock.seq,
            clock.start,
            clock.warning_at,
            clock.deadline,
            clock.warned,
            clock.breached,
        )
    return [
        sla.topic,
        clocks,
        sla._seqs or None,
        sla._first_started_at,
        sla._replied_since_customer,
        sla._ended,
        sla.first_reply_at,
        sla.first_reply_seconds,
        sla.first_reply_business_seconds,
        sla.breaches,
        sla.queue,
        sla.team,
        [[clock.version, clock.target_seconds] for clock in sla._clocks],
        sla._ended_at,
        [list(pair) for pair in sla._early_replies] if sla._early_replies else None,
        [_answered_row(clock, at) for clock, at in sla._answered] if sla._answered else None,
        list(sla._named_at),
    ]


def load_row(sla: ContactSla, row: list[Any], policies: Sequence[Policy]) -> None:
    """Fill a new ``sla`` from :func:`to_row` (same rules as :func:`load_state`)."""
    channel = sla.channel
    topic, clocks, seqs = row[0], row[1], row[2]
    sla.topic = topic
    if topic is not None:
        sla._selection = selection_for(policies, channel, topic)
    # Rows written before policy versions (10 fields) restore their clocks
    # under the current version and target.
    started_under: list[Any] = row[12] if len(row) > 12 else []
    if len(row) > 10:
        sla.queue, sla.team = row[10], row[11]
    if clocks:
        by_name = {p.spec.name: p for p in policies if p.spec.channel == channel}
        for index in range(0, len(clocks), 7):
            name, seq, start, warning_at, deadline, warned, breached = clocks[index : index + 7]
            policy = by_name.get(name)
            if policy is not None:
                version: str | None = None
                target: float | None = None
                if index // 7 < len(started_under):
                    version, target = started_under[index // 7]
                sla._clocks.append(
                    Clock(
                        policy,
                        seq,
                        start,
                        warning_at,
                        deadline,
                        warned,
                        breached,
                        version,
                        target,
                    )
                )
    if seqs:
        sla._seqs = dict(seqs)
    sla._first_started_at = row[3]
    sla._replied_since_customer = row[4]
    sla._ended = row[5]
    sla.first_reply_at = row[6]
    sla.first_reply_seconds = row[7]
    sla.first_reply_business_seconds = row[8]
    # Every breach sets both, so the count says whether the contact breached.
    sla.breaches = row[9]
    sla.breached = row[9] > 0
    # Rows written before out-of-order replies were kept (13 fields) have none.
    if len(row) > 13:
        sla._ended_at = row[13]
        if row[14]:
            sla._early_replies = [(at, actor) for at, actor in row[14]]
        if row[15]:
            by_name = {p.spec.name: p for p in policies if p.spec.channel == channel}
            sla._answered = _answered_from_rows(row[15], by_name)
    # Rows written before queue and team went by event time (16 fields) have none.
    if len(row) > 16:
        sla._named_at = list(row[16])
    sla._refresh_due()


def load_state(sla: ContactSla, state: dict[str, Any], policies: Sequence[Policy]) -> None:
    """Fill a new ``sla`` from :func:`to_state`.

    Stored deadlines are kept as they were. A clock whose policy is no longer
    configured is dropped: nothing can be said about a target that is gone.
    """
    by_name = {p.spec.name: p for p in policies if p.spec.channel == sla.channel}
    sla.topic = state["topic"]
    sla._selection = selection_for(policies, sla.channel, sla.topic)
    for name, seq, start, warning_at, deadline, warned, breached in state["clocks"]:
        policy = by_name.get(name)
        if policy is not None:
            sla._clocks.append(Clock(policy, seq, start, warning_at, deadline, warned, breached))
    if state["seqs"]:
        sla._seqs = dict(state["seqs"])
    sla._first_started_at = state["first_started_at"]
    sla._replied_since_customer = state["replied_since_customer"]
    sla._ended = state["ended"]
    sla.first_reply_at = state["first_reply_at"]
    sla.first_reply_seconds = state["first_reply_seconds"]
    sla.first_reply_business_seconds = state["first_reply_business_seconds"]
    sla.breached = state["breached"]
    sla.breaches = state["breaches"]
    sla._ended_at = state.get("ended_at")
    if state.get("early_replies"):
        sla._early_replies = [(at, actor) for at, actor in state["early_replies"]]
    if state.get("answered"):
        sla._answered = _answered_from_rows(
            [[*row[:7], None, None, row[7]] for row in state["answered"]], by_name
        )
    sla._refresh_due()


def _answered_row(clock: Clock, stopped_at: int) -> list[Any]:
    return [*clock.to_state(), clock.version, clock.target_seconds, stopped_at]


def _answered_from_rows(
    rows: list[Any], by_name: dict[str, Policy]
) -> list[tuple[Clock, int]] | None:
    """Answered first-reply clocks from :func:`_answered_row` rows (a policy no longer
    configured drops its clock, as for running clocks)."""
    answered: list[tuple[Clock, int]] = []
    for name, seq, start, warning_at, deadline, warned, breached, version, target, at in rows:
        policy = by_name.get(name)
        if policy is not None:
            clock = Clock(
                policy, seq, start, warning_at, deadline, warned, breached, version, target
            )
            answered.append((clock, at))
    return answered or None
