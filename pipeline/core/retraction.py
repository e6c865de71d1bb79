"""Retraction: a reply dated before a fired warning or breach takes it back.

A live worker fires a warning or breach as soon as its partition clock passes
the due time; on a quiet partition the wall-clock tick moves that clock, with no
skew held back (``worker.allowed_skew_seconds: 0``). A reply stamped before the
due time can still be on its way then (producer buffering, the network, a
producer whose clock lags). When it arrives, every record of its clock that it
precedes is taken back by one ``retracted`` :class:`SlaEvent` carrying the
cancelled record's own id (``<contact>:<policy>:<metric>:<seq>:<warning|breach>``),
so a keyed consumer (the SQL sink, a compacted topic) replaces the one by the
other, and the contact and its journey count one breach less.

Rules (pure; int epoch ms):

* A fired record is retracted when the reply that stops its clock is dated
  strictly before its due time. A clock is breached *at* its deadline, so a
  reply dated at the deadline completes the breach (``completed``), as before.
* Only while the partition clock is at most ``sla.retraction_window`` past the
  due time when the reply arrives; a later reply completes the breach, which
  stands. A window of 0 turns retraction off.
* A first-reply clock stopped by the contact's end or by a reply is kept: a
  reply dated before that stop (it arrived later) stops it at its own time and
  retracts what it precedes, as does an end dated before a fired record. A
  next-reply clock is gone once stopped: a later reply retracts nothing of it.

It reads the arrival order and the partition clock only, never a wall clock,
so a replay and a stream-clock worker emit the same records.
"""

from __future__ import annotations

from typing import Final

from pipeline.core.records import SLA_BREACH, SLA_RETRACTED, SlaEvent

__all__ = ["SLA_RETRACTED", "cancelled_kind", "cancels_breach", "retracts"]

DEFAULT_WINDOW_SECONDS: Final = 600.0


def retracts(due_ms: int, replied_at: int, clock_ms: int, window_ms: int) -> bool:
    """Whether a reply dated ``replied_at``, arriving at partition clock ``clock_ms``,
    takes back a fired record that fell due at ``due_ms``."""
    return window_ms > 0 and replied_at < due_ms and clock_ms - due_ms <= window_ms


def cancelled_kind(record: SlaEvent) -> str | None:
    """The kind (warning or breach) a ``retracted`` record takes back; None for other kinds."""
    if record.kind != SLA_RETRACTED:
        return None
    return record.sla_event_id.rpartition(":")[2]


def cancels_breach(record: SlaEvent) -> bool:
    """Whether ``record`` retracts a breach (the contact and its journey count one less)."""
    return record.kind == SLA_RETRACTED and record.sla_event_id.endswith(":" + SLA_BREACH)
