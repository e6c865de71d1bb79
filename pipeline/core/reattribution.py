"""Re-attribution: a customer loses events that identity had given it, and is rebuilt.

Issue 16 (docs/architecture.md, "Identity continuity"). The identity processor
(:mod:`pipeline.core.identity`) sends a customer the events of a channel
identifier once the identifier is linked to it; when the link turns out wrong
(``unlinked``, or the identifier moves to another customer) it sends an
``unattribute`` per event. The customer's processor then has to forget those
events as if they had never come, and correct every row it already sent.

The core is deterministic, so this module does it by replaying: from the first
event a customer got through identity on, its processor keeps a
:class:`CustomerJournal` with

- a snapshot of the customer's state just before that event,
- every event the customer applied since (from identity or not), with the
  partition clock it was applied at,
- the last record it sent per output key since the snapshot.

:func:`rebuild` restores the snapshot and applies the journal again without the
removed events, each at its recorded clock, with the timed work due up to that
clock fired first (exactly what the processor had fired before applying it),
then fires what is due up to the current clock. :func:`corrections` compares
the rebuilt records with the records sent and returns what changes the keyed
consumers (SQL) from the one to the other:

- a key in both, with other content: the rebuilt record, its ``version`` above
  the sent one (a journey gets ``correction`` true);
- a key only in the rebuilt records: the rebuilt record;
- a key only among the records sent: its retraction, for keys no other customer
  can send. A journey becomes ``superseded`` (``superseded_by`` None: its events
  went to another customer), a need named after the customer ``retracted``, an
  SLA warning or breach of a contact the customer keeps events of a
  ``retracted`` SLA event (as :mod:`pipeline.core.retraction` does). Records
  keyed by a contact that went entirely to another customer (its summary, its
  SLA records, its journey signals, a need the producer named) are not
  retracted: the new owner sends them again under the same keys, and a
  retraction arriving after them would overwrite its rows (docs/architecture.md).

The journal keeps events for ``identity.unlink_window`` of partition clock
after the customer's latest event from identity; older entries are folded into
the snapshot (an unattribute of them changes nothing: the documented limit) a
quarter window at a time, and the journal is dropped when no identity event is
that recent.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from pipeline.contract.event import InteractionEvent, event_from_record
from pipeline.core.records import (
    NEED_RETRACTED,
    OUTPUT_TYPES,
    SESSION_SUPERSEDED,
    SLA_BREACH,
    SLA_RETRACTED,
    SLA_WARNING,
    ContactSummary,
    LateEvent,
    NeedRecord,
    OutputRecord,
    SessionRecord,
    SlaEvent,
)

if TYPE_CHECKING:
    from pipeline.core.customer import CustomerState
    from pipeline.core.logic import CustomerLogic, CustomerLogicType
    from pipeline.core.rules import CoreRules

JOURNAL_VERSION: Final = 1
#: Key of the journal inside a customer's stored state dict.
STATE_KEY: Final = "identity_journal"

_BY_NAME: dict[str, type[OutputRecord]] = {cls.OUTPUT_NAME: cls for cls in OUTPUT_TYPES}
# Fields that say how a record was sent, not what it says: left out when deciding
# whether a rebuilt record differs from the one sent.
_EMISSION_FIELDS: Final = frozenset(
    {"version", "correction", "first_reply_new", "contained_new", "fired_at", "closed_at"}
)

RecordKey = tuple[str, str]


def record_key(record: OutputRecord) -> RecordKey:
    return (record.OUTPUT_NAME, record.key)


def record_from_dict(name: str, data: dict[str, Any]) -> OutputRecord:
    """The record ``to_dict()`` gave (lists and dicts copied)."""
    return _BY_NAME[name](**data)


class CustomerJournal:
    """What a customer's processor keeps to rebuild the customer without some events."""

    __slots__ = ("entries", "identified", "last_released_ms", "sent", "snapshot")

    def __init__(self, snapshot: dict[str, Any] | None) -> None:
        #: The customer's state before the first entry (None: it had none).
        self.snapshot = snapshot
        #: (event, partition clock it was applied at), in arrival order.
        self.entries: list[tuple[InteractionEvent, int]] = []
        #: The last record sent per (output name, key) since the snapshot.
        self.sent: dict[RecordKey, OutputRecord] = {}
        #: occurred_at of the latest event that came through identity.
        self.last_released_ms = -1
        #: event_id -> when identity identified it (its contact's identified_at).
        self.identified: dict[str, int] = {}

    def note_sent(self, record: OutputRecord) -> None:
        self.sent[record_key(record)] = record

    def event_ids(self) -> set[str]:
        return {event.event_id for event, _ in self.entries}

    def to_state(self) -> dict[str, Any]:
        return {
            "v": JOURNAL_VERSION,
            "snapshot": self.snapshot,
            "entries": [[event.to_record(), clock] for event, clock in self.entries],
            "sent": [[name, record.to_dict()] for (name, _), record in self.sent.items()],
            "last_released_ms": self.last_released_ms,
            "identified": sorted([event_id, at] for event_id, at in self.identified.items()),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> CustomerJournal:
        if data.get("v") != JOURNAL_VERSION:
            raise ValueError(f"identity journal version {data.get('v')!r} is not {JOURNAL_VERSION}")
        journal = cls(data["snapshot"])
        journal.entries = [(event_from_record(rec), int(clock)) for rec, clock in data["entries"]]
        for name, record in data["sent"]:
            journal.note_sent(record_from_dict(name, record))
        journal.last_released_ms = int(data["last_released_ms"])
        # Written since contacts.identified_at; a journal without it knows none.
        journal.identified = {event_id: int(at) for event_id, at in data.get("identified", ())}
        return journal


def snapshot_of(customer: CustomerLogic) -> dict[str, Any]:
    """The customer's state as a journal keeps it: a deep copy, since a state dict
    shares lists with the live customer (a journey's scores), which go on changing."""
    return copy.deepcopy(customer.to_state())


def _restore(
    logic: CustomerLogicType, customer_id: str, rules: CoreRules, snapshot: dict[str, Any] | None
) -> CustomerState:
    if snapshot is None:
        return logic(customer_id, rules)  # type: ignore[return-value]
    # A copy: a restored customer may keep (and later change) lists of its state,
    # and the snapshot serves every rebuild until the next fold.
    return logic.from_state(customer_id, copy.deepcopy(snapshot), rules)  # type: ignore[return-value]


def _apply_at(
    customer: CustomerState, event: InteractionEvent, clock: int, out: list[OutputRecord]
) -> None:
    """What the processor did with the event: work due by its clock fired, then the
    event, then work the event made due by that clock."""
    customer.fire_until(clock, out)
    customer.apply(event, clock, out)
    customer.fire_until(clock, out)


def fold(
    journal: CustomerJournal,
    logic: CustomerLogicType,
    customer_id: str,
    rules: CoreRules,
    horizon_ms: int,
    clock_ms: int,
) -> None:
    """Move the entries applied before partition clock ``horizon_ms`` into the snapshot,
    and forget what was sent about things the journal can no longer change.

    A rebuild from the new snapshot re-emits nothing about a journey or need that
    the folded events finished, so such a record left among those sent would look
    taken back at the next unattribute: only keys that the remaining journal
    emits again (applied without removals) stay.
    """
    count = 0
    for _, clock in journal.entries:
        if clock >= horizon_ms:
            break
        count += 1
    if not count:
        return
    customer = _restore(logic, customer_id, rules, journal.snapshot)
    scratch: list[OutputRecord] = []  # sent already
    for event, clock in journal.entries[:count]:
        _apply_at(customer, event, clock, scratch)
    journal.snapshot = snapshot_of(customer)
    del journal.entries[:count]
    probe = CustomerJournal(journal.snapshot)
    probe.entries = list(journal.entries)
    _, records = rebuild(probe, logic, customer_id, rules, (), clock_ms)
    live = {record_key(record) for record in records}
    journal.sent = {key: record for key, record in journal.sent.items() if key in live}


def rebuild(
    journal: CustomerJournal,
    logic: CustomerLogicType,
    customer_id: str,
    rules: CoreRules,
    removed: Iterable[str],
    clock_ms: int,
) -> tuple[CustomerState, list[OutputRecord]]:
    """The customer as if the ``removed`` events had never come, and its records.

    The journal loses the removed entries. The records are everything the
    rebuilt customer emitted, then an open record of each open journey (what
    the processor's flush sends), so that an open journey sent before is found.
    """
    gone = set(removed)
    customer = _restore(logic, customer_id, rules, journal.snapshot)
    out: list[OutputRecord] = []
    kept: list[tuple[InteractionEvent, int]] = []
    identified = journal.identified
    for event, clock in journal.entries:
        if event.event_id in gone:
            identified.pop(event.event_id, None)
            continue
        kept.append((event, clock))
        at = identified.get(event.event_id)
        if at is not None:
            customer.identified(event.contact_id, at, out)  # before it, as the processor
        _apply_at(customer, event, clock, out)
        if at is not None:
            customer.identified_done()
    journal.entries = kept
    customer.fire_until(clock_ms, out)
    for session in customer.book.open:
        session.pending = True
    out.extend(customer.pending_updates())
    return customer, out


def _content(record: OutputRecord) -> dict[str, Any]:
    return {k: v for k, v in record.to_dict().items() if k not in _EMISSION_FIELDS}


def _retraction(
    record: OutputRecord, clock_ms: int, customer_id: str, kept_contacts: Container[str]
) -> OutputRecord | None:
    """What takes ``record`` back in a keyed consumer (None: nothing should, or it is).

    Only keys no other customer can send: a journey (its id hashes the customer
    in), a need named after the customer, an SLA record of a contact the customer
    keeps events of. A contact that went entirely to another customer is sent
    again by that one under the same keys (its SLA records, its need if the
    producer named it); retracting them here could overwrite the new owner's
    rows when its partition is ahead (the worker: docs/architecture.md).
    """
    if isinstance(record, SessionRecord):
        if record.status == SESSION_SUPERSEDED:
            return None
        return replace(
            record,
            status=SESSION_SUPERSEDED,
            superseded_by=None,
            version=record.version + 1,
            correction=True,
        )
    if isinstance(record, NeedRecord):
        if record.status == NEED_RETRACTED or not record.need_id.startswith(customer_id + ":"):
            return None
        return replace(record, status=NEED_RETRACTED, version=record.version + 1)
    if isinstance(record, SlaEvent):
        if record.kind not in (SLA_WARNING, SLA_BREACH) or record.contact_id not in kept_contacts:
            return None
        return replace(record, kind=SLA_RETRACTED, fired_at=clock_ms)
    # ContactSummary: the new owner sends it again under the same key.
    # JourneySignal: the sink files a signal by its kind and has no retraction for
    # it yet; the new owner sends a signal between the same contacts again under
    # the same key (a gap otherwise: docs/architecture.md).
    # LateEvent: the event itself moved; its row stays (keyed by event id).
    return None


def _next_version(rebuilt: OutputRecord, sent: OutputRecord) -> OutputRecord:
    if isinstance(rebuilt, SessionRecord) and isinstance(sent, SessionRecord):
        version = max(sent.version + 1, rebuilt.version)
        return replace(rebuilt, version=version, correction=True)
    if isinstance(rebuilt, ContactSummary) and isinstance(sent, ContactSummary):
        # Counting consumers (the worker's metrics) counted the first reply,
        # containment and service level on the first summary that carried them: a
        # correction carries the flags only for what no summary sent had yet.
        return replace(
            rebuilt,
            version=max(sent.version + 1, rebuilt.version),
            first_reply_new=rebuilt.first_reply_seconds is not None
            and sent.first_reply_seconds is None,
            contained_new=rebuilt.contained is not None and sent.contained is None,
            settled_new=rebuilt.settled and not sent.settled,
        )
    if isinstance(rebuilt, NeedRecord) and isinstance(sent, NeedRecord):
        return replace(rebuilt, version=max(sent.version + 1, rebuilt.version))
    return rebuilt


def corrections(
    journal: CustomerJournal,
    rebuilt: list[OutputRecord],
    clock_ms: int,
    customer_id: str,
    kept_contacts: Container[str],
) -> list[OutputRecord]:
    """The records that turn what was sent into what the rebuilt customer says.

    ``kept_contacts``: the contacts the rebuilt customer still has events of
    (:func:`kept_contacts`). The journal's record of what was sent follows (it
    then holds the corrections).
    """
    latest: dict[RecordKey, OutputRecord] = {}
    for record in rebuilt:
        if type(record) is not LateEvent:
            latest[record_key(record)] = record
    out: list[OutputRecord] = []
    for key, record in latest.items():
        before = journal.sent.get(key)
        if before is None:
            out.append(record)
        elif _content(before) != _content(record):
            out.append(_next_version(record, before))
    for key, before in list(journal.sent.items()):
        if key not in latest:
            retraction = _retraction(before, clock_ms, customer_id, kept_contacts)
            if retraction is not None:
                out.append(retraction)
    for record in out:
        journal.note_sent(record)
    return out


def kept_contacts(journal: CustomerJournal, customer: CustomerState) -> set[str]:
    """Contacts the rebuilt customer still has events of (journal entries or state)."""
    kept = {event.contact_id for event, _ in journal.entries}
    kept.update(customer.contacts)
    return kept


def raise_versions(customer: CustomerState, sent: dict[RecordKey, OutputRecord]) -> None:
    """Make the rebuilt customer's next records win over the corrections just sent:
    each journey, contact and need counts at least the versions sent under its key,
    and a closed journey's kept final record is the one sent."""
    for session in customer.book.open:
        record = sent.get((SessionRecord.OUTPUT_NAME, session.session_id))
        if isinstance(record, SessionRecord) and record.version > session.version:
            session.version = record.version
    for session_id, final in list(customer.finals.items()):
        record = sent.get((SessionRecord.OUTPUT_NAME, session_id))
        if isinstance(record, SessionRecord) and record.version > final.version:
            customer.finals[session_id] = record
    for contact in customer.contacts.values():
        record = sent.get((ContactSummary.OUTPUT_NAME, contact.contact_id))
        if isinstance(record, ContactSummary) and record.version > contact.version:
            contact.version = record.version
    for need in customer.needs.open.values():
        record = sent.get((NeedRecord.OUTPUT_NAME, need.need_id))
        if isinstance(record, NeedRecord) and record.version > need.version:
            need.version = record.version
