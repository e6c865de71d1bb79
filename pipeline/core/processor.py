"""The per-partition stream processor: one instance per input partition.

The Faust agent (and the offline replay) feeds a partition's events in arrival
order to :meth:`PartitionProcessor.process`, persists :meth:`take_dirty` once per
batch and sends the returned records. Results depend only on the arrival order
of the partition's events and on the clock values passed to :meth:`advance`
(never on batch boundaries, wall-clock time or dict/set iteration order).

Timed work (session closes, SLA due times, switch settlements, expiries) sits in
one timer heap of ``(due_ms, customer_id)`` entries, one live entry per customer,
so :meth:`advance` finds due work in O(log n). Entries may be stale; a popped
entry is honoured only if it is still the customer's registered wake-up, and then
only work due at that entry's time runs, so work fires in (due, customer) order.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final

import orjson

from pipeline.contract.event import InteractionEvent
from pipeline.core.customer import APPLIED, DUPLICATE, CustomerState
from pipeline.core.reattribution import (
    STATE_KEY,
    CustomerJournal,
    corrections,
    fold,
    kept_contacts,
    raise_versions,
    rebuild,
    snapshot_of,
)
from pipeline.core.records import (
    SESSION_FINAL,
    SESSION_SUPERSEDED,
    SLA_RETRACTED,
    JourneySignal,
    OutputRecord,
    SessionRecord,
    SlaEvent,
)
from pipeline.core.rules import CoreRules
from pipeline.settings import CoreSettings, Settings

if TYPE_CHECKING:
    from pipeline.core.calendar import Calendar
    from pipeline.core.logic import CustomerLogic, CustomerLogicType
    from pipeline.core.sla_policy import Policy

MS: Final = 1000
BUSINESS_CALENDAR: Final = "banking_hours"

# Settings id -> (settings, policies, business calendar). The entry keeps the
# settings alive, so an id is never reused while its entry exists.
_RESOLVED: dict[int, tuple[Settings, tuple[Any, ...], Any]] = {}
_MAX_RESOLVED: Final = 16
#: How a customer's state is written: compact JSON by orjson, about a fifth of
#: the standard library encoder's CPU per state (a state is written for every
#: changed customer in every batch). Non-str keys are written as strings, as
#: ``json`` writes them; the bytes equal ``json``'s compact form for ASCII text.
_STATE_JSON_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


@dataclass
class ProcessorStats:
    """Counters of one partition (exported as metrics by the agent)."""

    events: int = 0
    duplicates: int = 0
    late: int = 0
    sessions_closed: int = 0
    sessions_superseded: int = 0
    sla_events: int = 0
    sla_retractions: int = 0
    journey_signals: int = 0
    customers_evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        # Not vars(): a compiled (mypyc) instance has no __dict__.
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}


@dataclass
class ReattributionStats:
    """Issue 16 counters of one partition (apart from ProcessorStats, whose figures
    the golden digests pin): events that came through identity, customers rebuilt
    because identity took events back, the events taken back, and unattribute
    records of events the customer no longer keeps (older than the unlink window)."""

    events_released: int = 0
    reattributions: int = 0
    events_unattributed: int = 0
    unattributed_unknown: int = 0

    def as_dict(self) -> dict[str, int]:
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}


def identifier_retraction_window_ms(core: CoreSettings, identity_hold_ms: int) -> int:
    """How long after a due time an event with a channel identifier may still retract
    what fired: ``sla.retraction_window``, but at least ``identity.hold`` + grace,
    the longest identity holds an event plus the grace its release may take to
    arrive (0 while retraction is off)."""
    window_ms = round(core.retraction_window_seconds * MS)
    if window_ms <= 0:
        return 0
    return max(window_ms, identity_hold_ms + round(core.session_grace_seconds * MS))


class PartitionProcessor:
    """Sessions, contacts, SLA clocks and journey signals of one partition."""

    def __init__(
        self,
        *,
        core: CoreSettings,
        policies: Sequence[Policy],
        business_calendar: Calendar,
        partition: int = 0,
        clock_ms: int | None = None,
        sla_type: Any = None,
        synchronous_channels: frozenset[str] = frozenset(),
        logic: CustomerLogicType | None = None,
        unlink_window_ms: int = 0,
        identity_hold_ms: int = 0,
    ) -> None:
        """``logic`` makes each customer's state machine (:mod:`pipeline.core.logic`);
        by default a :class:`CustomerState`."""
        if sla_type is None:
            from pipeline.core.sla import ContactSla

            sla_type = ContactSla
        self.partition = partition
        self.rules = CoreRules(
            gap_ms=round(core.session_gap_seconds * MS),
            grace_ms=round(core.session_grace_seconds * MS),
            switch_window_ms=round(core.switch_window_seconds * MS),
            false_resolution_ms=round(core.false_resolution_seconds * MS),
            dedup_retention_ms=round(core.dedup_retention_seconds * MS),
            policies=tuple(policies),
            business_calendar=business_calendar,
            sla_type=sla_type,
            synchronous=frozenset(synchronous_channels),
            max_open_contact_ms=round(core.max_open_contact_seconds * MS),
            retraction_window_ms=round(core.retraction_window_seconds * MS),
            identifier_retraction_window_ms=identifier_retraction_window_ms(core, identity_hold_ms),
            identity_hold_ms=identity_hold_ms,
            need_window_ms=round(core.need_window_seconds * MS),
            bounce_min_contacts=core.bounce_min_contacts,
            bounce_min_channels=core.bounce_min_channels,
        )
        self.logic: CustomerLogicType = CustomerState if logic is None else logic
        self.stats = ProcessorStats()
        self.reattribution = ReattributionStats()
        self._clock = clock_ms
        self._max_event_ms: int | None = None
        self._customers: dict[str, CustomerLogic] = {}
        self._timers: list[tuple[int, str]] = []
        self._dirty: dict[str, None] = {}
        self._updated: set[str] = set()
        # Customers that got events through identity (issue 16): what they need
        # to be rebuilt without some of them (pipeline/core/reattribution.py).
        self._journals: dict[str, CustomerJournal] = {}
        self.unlink_window_ms = unlink_window_ms

    @classmethod
    def from_settings(cls, settings: Settings, partition: int = 0) -> PartitionProcessor:
        """A processor with the calendars and SLA policies the settings describe.

        The processors of one settings object share their calendars and policies,
        so a business calendar's holidays and year blocks are built once per
        worker, not once per partition.
        """
        cached = _RESOLVED.get(id(settings))
        if cached is None or cached[0] is not settings:
            from pipeline.core.calendar import build_calendars
            from pipeline.core.sla_policy import resolve_policies

            calendars = build_calendars(settings.calendars)
            business = calendars.get(BUSINESS_CALENDAR) or calendars["24x7"]
            policies = resolve_policies(settings.policies, calendars)
            if len(_RESOLVED) >= _MAX_RESOLVED:
                _RESOLVED.clear()
            cached = _RESOLVED[id(settings)] = (settings, policies, business)
        _, policies, business = cached
        return cls(
            core=settings.core,
            policies=policies,
            business_calendar=business,
            partition=partition,
            synchronous_channels=settings.channels.synchronous,
            unlink_window_ms=round(settings.identity.unlink_window_seconds * MS),
            identity_hold_ms=round(settings.identity.hold_seconds * MS),
        )

    # -- input --------------------------------------------------------------------

    @property
    def clock_ms(self) -> int | None:
        """Stream time of the partition: never goes backwards."""
        return self._clock

    def process(self, event: InteractionEvent) -> list[OutputRecord]:
        """Advance the clock to the event, fire what is due, then apply the event."""
        out: list[OutputRecord] = []
        stats = self.stats
        stats.events += 1
        at = event.occurred_at
        timers = self._timers
        clock = self._clock
        if clock is None or at > clock:
            # The clock is never behind the latest event time, so this is one too.
            self._clock = self._max_event_ms = clock = at
            if timers and timers[0][0] <= at:
                self._drain(at, out)
        elif self._max_event_ms is None or at > self._max_event_ms:
            self._max_event_ms = at  # advance() had moved the clock past the events
        customer_id = event.customer_id
        customer = self._customers.get(customer_id)
        if customer is None:
            customer = self._customers[customer_id] = self.logic(customer_id, self.rules)
        outcome = customer.apply(event, clock, out)
        journals = self._journals
        if journals and outcome != DUPLICATE and customer_id in journals:
            journals[customer_id].entries.append((event, clock))
            self._prune_journal(customer_id)
        if outcome == DUPLICATE:
            stats.duplicates += 1
        else:
            self._dirty[customer_id] = None
            if outcome == APPLIED:
                self._updated.add(customer_id)
            else:  # LATE
                stats.late += 1
            hint = customer.due_hint
            wake = customer.wake
            if wake is None:
                self._schedule(customer)
            elif hint is not None and hint < wake:
                customer.wake = hint
                heapq.heappush(timers, (hint, customer_id))
            # The event may have made work due already (a settlement of a pair
            # that arrived out of order): run it now, in order.
            if timers and timers[0][0] <= clock:
                self._drain(clock, out)
        if out:
            self._count(out)
            if journals:
                self._note_sent(out)
        return out

    def process_released(
        self, event: InteractionEvent, identified_at: int | None = None
    ) -> list[OutputRecord]:
        """An event identity gave this customer (its ``customer_id`` set by the
        identity processor, :mod:`pipeline.core.identity`): processed as any event,
        and kept for ``identity.unlink_window`` so it can be taken back.
        ``identified_at``: the start of the link that gave it, kept on its contact
        (``contacts.identified_at``)."""
        customer_id = event.customer_id
        journal = self._journals.get(customer_id)
        if journal is None:
            customer = self._customers.get(customer_id)
            snapshot = None if customer is None else snapshot_of(customer)
            journal = self._journals[customer_id] = CustomerJournal(snapshot)
        if event.occurred_at > journal.last_released_ms:
            journal.last_released_ms = event.occurred_at
        self.reattribution.events_released += 1
        if identified_at is None:
            return self.process(event)
        # The contact learns its link before the event is applied (and before the
        # timed work its arrival fires), so every record it makes carries the link.
        journal.identified[event.event_id] = identified_at
        customer = self._customers.get(customer_id)
        if customer is None:
            customer = self._customers[customer_id] = self.logic(customer_id, self.rules)
        more: list[OutputRecord] = []
        customer.identified(event.contact_id, identified_at, more)
        if more:
            self._dirty[customer_id] = None
            self._count(more)
            self._note_sent(more)
        out = more + self.process(event)
        customer.identified_done()
        return out

    def unattribute(self, customer_id: str, event_ids: Sequence[str]) -> list[OutputRecord]:
        """Identity took these events back from the customer: rebuild it without them
        and return the corrections of every record that changes (issue 16)."""
        journal = self._journals.get(customer_id)
        known = journal.event_ids() if journal is not None else set()
        removed = [event_id for event_id in event_ids if event_id in known]
        self.reattribution.unattributed_unknown += len(event_ids) - len(removed)
        if journal is None or not removed:
            return []
        clock = self._clock if self._clock is not None else 0
        rebuilt, records = rebuild(journal, self.logic, customer_id, self.rules, removed, clock)
        kept = kept_contacts(journal, rebuilt)
        out = corrections(journal, records, clock, customer_id, kept)
        raise_versions(rebuilt, journal.sent)
        self.reattribution.reattributions += 1
        self.reattribution.events_unattributed += len(removed)
        rebuilt.wake = None
        self._customers[customer_id] = rebuilt
        self._touched(rebuilt)
        self._updated.discard(customer_id)  # the corrections carry its open journeys
        for session in rebuilt.book.open:
            session.pending = False
        self._count(out)
        return out

    def advance(self, clock_ms: int) -> list[OutputRecord]:
        """Move the clock forward (live mode: wall clock minus skew) and fire what is due."""
        out: list[OutputRecord] = []
        if self._clock is None or clock_ms > self._clock:
            self._clock = clock_ms
            self._drain(clock_ms, out)
            self._count(out)
            if self._journals:
                self._note_sent(out)
        return out

    def end_of_input(self, input_end_ms: int | None = None) -> list[OutputRecord]:
        """No more events: fire timed work up to the end of the input, settle, close everything.

        ``input_end_ms`` is the latest event time of the whole input (all
        partitions): a replay passes it so that every partition ends at the same
        time and the outputs do not depend on how customers hash to partitions.
        Without it the partition ends at its own latest event time.
        """
        out: list[OutputRecord] = []
        end = self._max_event_ms
        if input_end_ms is not None and (end is None or input_end_ms > end):
            end = input_end_ms
        if end is not None:
            if self._clock is None or end > self._clock:
                self._clock = end
            self._drain(end, out)
        for customer_id in sorted(self._customers):
            customer = self._customers[customer_id]
            if customer.has_open_work:
                customer.finish(out)
                self._touched(customer)
        self._count(out)
        if self._journals:
            self._note_sent(out)
        return out

    def flush_updates(self) -> list[SessionRecord]:
        """``open`` records of every open session changed since the last flush."""
        out: list[SessionRecord] = []
        for customer_id in sorted(self._updated):
            customer = self._customers.get(customer_id)
            if customer is not None:
                updates = customer.pending_updates()
                if updates:
                    out.extend(updates)
                    self._dirty[customer_id] = None
        self._updated.clear()
        if self._journals:
            self._note_sent(out)  # type: ignore[arg-type]
        return out

    # -- state ----------------------------------------------------------------------

    def take_dirty(self) -> dict[str, bytes | None]:
        """customer_id -> serialized state (None: evicted) of customers changed since last call."""
        dirty: dict[str, bytes | None] = {}
        customers = self._customers
        encode = orjson.dumps
        options = _STATE_JSON_OPTIONS
        journals = self._journals
        for customer_id in self._dirty:
            customer = customers.get(customer_id)
            if customer is None:
                dirty[customer_id] = None
                continue
            state = customer.to_state()
            if journals and customer_id in journals:
                state[STATE_KEY] = journals[customer_id].to_state()
            dirty[customer_id] = encode(state, option=options)
        self._dirty = {}
        return dirty

    def load_state(self, customer_id: str, data: bytes) -> None:
        """Restore one customer (after a restart) and rebuild its timers."""
        state = orjson.loads(data)
        journal = state.pop(STATE_KEY, None)
        if journal is not None:
            self._journals[customer_id] = CustomerJournal.from_state(journal)
        customer = self.logic.from_state(customer_id, state, self.rules)
        self._customers[customer_id] = customer
        self._schedule(customer)
        if customer.has_pending:
            self._updated.add(customer_id)

    def load_clock(self, clock_ms: int) -> None:
        """Restore the partition clock (after a restart)."""
        if self._clock is None or clock_ms > self._clock:
            self._clock = clock_ms
        if self._max_event_ms is None or clock_ms > self._max_event_ms:
            self._max_event_ms = clock_ms

    # -- gauges ---------------------------------------------------------------------

    def open_sessions(self) -> int:
        return sum(c.open_session_count for c in self._customers.values())

    def customers(self) -> int:
        return len(self._customers)

    def oldest_open_sla_clock(self) -> dict[str, int]:
        """channel -> start time of the oldest running SLA clock."""
        oldest: dict[str, int] = {}
        for customer in self._customers.values():
            for channel, since in customer.running_sla_clocks():
                if channel not in oldest or since < oldest[channel]:
                    oldest[channel] = since
        return oldest

    def waiting_contacts(self) -> dict[str, int]:
        """channel -> contacts whose customer waits for a reply now (a running SLA clock)."""
        waiting: dict[str, int] = {}
        for customer in self._customers.values():
            for channel, _since in customer.running_sla_clocks():
                waiting[channel] = waiting.get(channel, 0) + 1
        return waiting

    # -- internals ------------------------------------------------------------------

    def _schedule(self, customer: CustomerLogic, due: int | None = None) -> None:
        if due is None:
            due = customer.next_due()
        if due is not None and (customer.wake is None or due < customer.wake):
            customer.wake = due
            heapq.heappush(self._timers, (due, customer.customer_id))

    def _touched(self, customer: CustomerLogic, next_due: int | None = None) -> None:
        """After a change: reschedule, note for persistence and updates, or evict."""
        customer_id = customer.customer_id
        self._dirty[customer_id] = None
        if self._journals and customer_id in self._journals:
            self._prune_journal(customer_id)
        if customer.is_empty and customer_id not in self._journals:
            del self._customers[customer_id]
            self.stats.customers_evicted += 1
            return
        self._schedule(customer, next_due)
        if customer.has_pending:
            self._updated.add(customer_id)

    def _drain(self, limit_ms: int, out: list[OutputRecord]) -> None:
        timers = self._timers
        customers = self._customers
        while timers and timers[0][0] <= limit_ms:
            due, customer_id = heapq.heappop(timers)
            customer = customers.get(customer_id)
            if customer is None or customer.wake != due:
                continue  # stale: the customer was rescheduled or evicted
            customer.wake = None
            fired, next_due = customer.fire_until(due, out)
            if fired:
                self._touched(customer, next_due)
            elif next_due is not None:
                customer.wake = next_due
                heapq.heappush(timers, (next_due, customer_id))

    def _note_sent(self, out: list[OutputRecord]) -> None:
        """Keep the last record per key of each journaled customer, and let journals go
        whose latest event from identity is older than the unlink window."""
        journals = self._journals
        for record in out:
            journal = journals.get(record.customer_id)
            if journal is not None:
                journal.note_sent(record)

    def _prune_journal(self, customer_id: str) -> None:
        """Fold entries older than the unlink window into the snapshot; drop the
        journal when no event from identity is that recent."""
        journal = self._journals.get(customer_id)
        if journal is None or self._clock is None:
            return
        horizon = self._clock - self.unlink_window_ms
        if journal.last_released_ms < horizon:
            del self._journals[customer_id]
            self._dirty[customer_id] = None
            return
        # A quarter window of slack: each fold replays the rest of the journal once.
        if journal.entries and journal.entries[0][1] < horizon - self.unlink_window_ms // 4:
            fold(journal, self.logic, customer_id, self.rules, horizon, self._clock)

    def _count(self, out: list[OutputRecord]) -> None:
        stats = self.stats
        for record in out:
            # type() is, not isinstance(): the record classes have no subclasses,
            # and an identity test is cheaper than an isinstance() call.
            kind = type(record)
            if kind is SessionRecord:
                status = record.status  # type: ignore[union-attr]  # kind is SessionRecord
                if status == SESSION_FINAL:
                    stats.sessions_closed += 1
                elif status == SESSION_SUPERSEDED:
                    stats.sessions_superseded += 1
            elif kind is SlaEvent:
                stats.sla_events += 1
                if record.kind == SLA_RETRACTED:  # type: ignore[union-attr]  # kind is SlaEvent
                    stats.sla_retractions += 1
            elif kind is JourneySignal:
                stats.journey_signals += 1
