"""Identity continuity: events known only by a channel identifier, given their customer.

A phone call is known by its number until the IVR identifies the caller, a chat by
its session until the customer logs in (issue 16; the design is in
docs/architecture.md, "Identity continuity"). This module is the identity
processor of that design, pure and without I/O: the worker feeds it the events
that :func:`~pipeline.contract.event.needs_identity` (events without a customer,
``identified``, ``unlinked``) and sends what it returns.

Per identifier (``<kind>:<value>``) it keeps:

- the link history ``[(from_ms, customer_id | None), ...]``: ``identified`` adds a
  link from its ``occurred_at``; ``unlinked`` voids the customer's link (it was
  wrong), leaving ``None`` from that link's start;
- the events held because no customer is known for them, at most
  ``identity.hold`` of event time after the earliest of them and at most
  ``identity.max_held`` of them; beyond either bound they are released as the
  anonymous customer ``anon:<kind>:<pseudonym of the value>`` and counted;
- the events it released, for ``identity.unlink_window`` of event time, so that a
  later change of the history can re-attribute them.

An event belongs to the customer of its contact: the customer of the link in force
at the contact's latest event (the latest ``occurred_at`` of the contact's events
the identifier holds or released), the freshest identification of it. So a
contact is never split between two customers: a call the IVR identifies as
another customer than the number's earlier link is that customer's from its
start, and a later event of a contact after a link changed moves the contact's
earlier events with it. A contact with no customer in force then (before the
first link, or after a voided one) belongs to the next link with a customer: the
anonymous start of a call belongs to the customer the call is identified as.
Whenever the history changes, every
retained event whose owner changed is re-attributed: an :class:`Unattribute` for
its old customer (never for one it was not released to), then a :class:`Release`
to the new one, or it is held again (or stays anonymous). Released events keep
their ``event_id`` and ``occurred_at``; only ``customer_id`` becomes the customer.

Time is event time: the clock is the latest ``occurred_at`` seen or the value
given to :meth:`IdentityProcessor.advance`, as in the stream core
(:mod:`pipeline.core.processor`); results depend only on the order of the input
and the clock values, so a replay equals the worker.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import hmac
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Final

from pipeline.contract.event import (
    IDENTIFIED,
    UNLINKED,
    InteractionEvent,
    event_from_record,
    needs_identity,
)
from pipeline.core.identity_measures import IdentityMeasures, IdentityStats
from pipeline.settings import IdentitySettings

#: Version of the per-identifier state dict; :meth:`IdentityProcessor.load_state`
#: refuses any other.
STATE_VERSION: Final = 1
ANONYMOUS_PREFIX: Final = "anon:"
_PSEUDONYM_HEX_CHARS: Final = 32
MS: Final = 1000


def identity_key(kind: str, value: str) -> str:
    """The identifier's key (identity topic key, state key): ``<kind>:<value>``."""
    return f"{kind}:{value}"


def identifier_pseudonym(kind: str, value: str, key: bytes | None) -> str:
    """``<kind>:`` + 32 hex characters of the keyed hash of the value: how an identifier
    leaves the identity processor (link rows, the anonymous customer)."""
    data = value.encode("utf-8")
    if key:
        digest = hmac.new(key, data, hashlib.sha256).hexdigest()
    else:
        digest = hashlib.sha256(data).hexdigest()
    return f"{kind}:{digest[:_PSEUDONYM_HEX_CHARS]}"


def anonymous_customer(kind: str, value: str, key: bytes | None) -> str:
    """The customer key of an identifier's events that no customer claimed.

    ``anon:<kind>:`` + 32 hex characters of HMAC-SHA256(key, value), the keyed
    hash the SQL sink uses for customer ids (pipeline/sink/pseudonym.py), so the
    identifier itself never leaves the identity processor. Without a key it is
    plain SHA-256: deterministic, but a dictionary of phone numbers reverses it,
    so production passes the pseudonym key.
    """
    return ANONYMOUS_PREFIX + identifier_pseudonym(kind, value, key)


@dataclass(frozen=True, slots=True)
class Release:
    """Send ``event`` (its ``customer_id`` set to ``customer_key``) to that customer.

    ``identified_at``: the start of the link that gives the event to the customer
    (its ``identity_links.valid_from``; ``contacts.identified_at``), None for the
    anonymous customer.
    """

    customer_key: str
    event: InteractionEvent
    identified_at: int | None = None


@dataclass(frozen=True, slots=True)
class Unattribute:
    """The event ``event_id``, released to ``customer_key`` before, is not that customer's."""

    customer_key: str
    event_id: str


IdentityOutput = Release | Unattribute


@dataclass(frozen=True, slots=True)
class IdentityLinkRecord:
    """One period of an identifier's link history, for the ``identity_links`` table.

    ``identifier`` is :func:`identifier_pseudonym` (never the value itself);
    ``customer_id`` None means no customer from ``valid_from`` (a wrong link was
    undone); ``valid_to`` None means until further notice. Keyed by
    ``<identifier>:<valid_from>``: a link moved to another customer at the same
    moment, or voided, replaces its row; ``changed_at`` is the identity partition's
    clock when it changed.
    """

    OUTPUT_NAME: ClassVar[str] = "identity_link"

    link_id: str
    identifier: str
    identifier_kind: str
    customer_id: str | None
    valid_from: int
    valid_to: int | None
    changed_at: int

    @property
    def key(self) -> str:
        return self.link_id

    def to_dict(self) -> dict[str, Any]:
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}


@dataclass(frozen=True, slots=True)
class IdentityRules:
    hold_ms: int
    max_held: int
    unlink_window_ms: int
    #: The key of :func:`anonymous_customer`: the sink's pseudonym key
    #: (``sql.pseudonym_key_file``) when the worker has one, else None.
    pseudonym_key: bytes | None = None

    @classmethod
    def from_settings(
        cls, identity: IdentitySettings, pseudonym_key: bytes | None = None
    ) -> IdentityRules:
        return cls(
            hold_ms=round(identity.hold_seconds * MS),
            max_held=identity.max_held,
            unlink_window_ms=round(identity.unlink_window_seconds * MS),
            pseudonym_key=pseudonym_key,
        )


def _count(counts: dict[str, int], channel: str, n: int = 1) -> None:
    counts[channel] = counts.get(channel, 0) + n


@dataclass
class _Released:
    customer_key: str
    anonymous: bool
    event: InteractionEvent


def _note_last(lasts: dict[str, int], event: InteractionEvent) -> None:
    known = lasts.get(event.contact_id)
    if known is None or event.occurred_at > known:
        lasts[event.contact_id] = event.occurred_at


def _order(event: InteractionEvent) -> tuple[int, str]:
    return (event.occurred_at, event.event_id)


class IdentifierState:
    """Links, held and released events of one identifier."""

    __slots__ = ("held", "kind", "link_events", "links", "released", "value", "wake")

    def __init__(self, kind: str, value: str) -> None:
        self.kind = kind
        self.value = value
        self.links: list[tuple[int, str | None]] = []
        self.held: dict[str, InteractionEvent] = {}
        self.released: dict[str, _Released] = {}
        #: event_id -> occurred_at of the identified/unlinked events applied
        #: (kept for the unlink window, for deduplication).
        self.link_events: dict[str, int] = {}
        self.wake: int | None = None

    def knows(self, event_id: str) -> bool:
        return event_id in self.held or event_id in self.released or event_id in self.link_events

    def contact_lasts(self) -> dict[str, int]:
        """contact id -> the latest ``occurred_at`` of its events held or released."""
        lasts: dict[str, int] = {}
        for event in self.held.values():
            _note_last(lasts, event)
        for released in self.released.values():
            _note_last(lasts, released.event)
        return lasts

    def contact_seen(self, event: InteractionEvent) -> tuple[int, set[str | None]]:
        """In one pass over the events held and released: the latest event time of
        ``event``'s contact (the event itself included), and whom its other events
        are with (a customer key; None for one held)."""
        last = event.occurred_at
        contact_id = event.contact_id
        holders: set[str | None] = set()
        for held in self.held.values():
            if held.contact_id == contact_id:
                holders.add(None)
                if held.occurred_at > last:
                    last = held.occurred_at
        for released in self.released.values():
            other = released.event
            if other.contact_id == contact_id:
                holders.add(released.customer_key)
                if other.occurred_at > last:
                    last = other.occurred_at
        return last, holders

    def owner_at(self, at: int) -> str | None:
        """The customer an event at ``at`` belongs to, or None if none is known."""
        link = self.link_at(at)
        return None if link is None else link[1]

    def link_at(self, at: int) -> tuple[int, str] | None:
        """The link (start, customer) an event at ``at`` belongs to, or None."""
        links = self.links
        index = bisect.bisect_right(links, at, key=lambda link: link[0]) - 1
        if index >= 0 and links[index][1] is not None:
            return links[index]  # type: ignore[return-value]  # its customer is set
        for from_ms, customer in links[index + 1 :]:
            if customer is not None:
                # An anonymous stretch belongs to the next identification.
                return from_ms, customer
        return None

    def link(self, at: int, customer: str) -> bool:
        """Link to ``customer`` from ``at`` on; False if that changes nothing."""
        links = self.links
        index = bisect.bisect_left(links, at, key=lambda link: link[0])
        if index < len(links) and links[index][0] == at:
            if links[index][1] == customer:
                return False
            links[index] = (at, customer)
            return True
        if index > 0 and links[index - 1][1] == customer:
            return False  # already this customer's at ``at``
        links.insert(index, (at, customer))
        return True

    def unlink(self, at: int, customer: str) -> bool:
        """Void the latest link to ``customer`` starting at or before ``at``."""
        for index in range(len(self.links) - 1, -1, -1):
            from_ms, linked = self.links[index]
            if from_ms <= at and linked == customer:
                self.links[index] = (from_ms, None)
                return True
        return False

    def next_due(self, rules: IdentityRules) -> int | None:
        """Event time of the next hold expiry or retention pruning, if any."""
        dues = []
        if self.held:
            dues.append(min(e.occurred_at for e in self.held.values()) + rules.hold_ms)
        if self.released:
            oldest = min(r.event.occurred_at for r in self.released.values())
            dues.append(oldest + rules.unlink_window_ms + 1)
        if self.link_events:
            dues.append(min(self.link_events.values()) + rules.unlink_window_ms + 1)
        return min(dues) if dues else None

    @property
    def is_empty(self) -> bool:
        return not (self.links or self.held or self.released or self.link_events)

    def to_state(self) -> dict[str, Any]:
        """A JSON-able dict (lists in a fixed order, so equal states serialise equally)."""
        return {
            "v": STATE_VERSION,
            "kind": self.kind,
            "value": self.value,
            "links": [[from_ms, customer] for from_ms, customer in self.links],
            "held": [e.to_record() for e in sorted(self.held.values(), key=_order)],
            "released": [
                [r.customer_key, r.anonymous, r.event.to_record()]
                for r in sorted(self.released.values(), key=lambda r: _order(r.event))
            ],
            "link_events": sorted([event_id, at] for event_id, at in self.link_events.items()),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> IdentifierState:
        if data.get("v") != STATE_VERSION:
            raise ValueError(
                f"identity state version {data.get('v')!r} is not {STATE_VERSION}; "
                "this release cannot read it"
            )
        state = cls(data["kind"], data["value"])
        state.links = [(int(from_ms), customer) for from_ms, customer in data["links"]]
        for record in data["held"]:
            event = event_from_record(record)
            state.held[event.event_id] = event
        for customer_key, anonymous, record in data["released"]:
            event = event_from_record(record)
            state.released[event.event_id] = _Released(customer_key, bool(anonymous), event)
        state.link_events = {event_id: int(at) for event_id, at in data["link_events"]}
        return state


class IdentityProcessor:
    """The identity processor of one identity-topic partition."""

    def __init__(self, rules: IdentityRules, *, clock_ms: int | None = None) -> None:
        self.rules = rules
        self.stats = IdentityStats()
        self.measures = IdentityMeasures()
        self._link_rows: dict[str, IdentityLinkRecord] = {}
        self._clock = clock_ms
        self._identifiers: dict[str, IdentifierState] = {}
        self._timers: list[tuple[int, str]] = []
        self._dirty: dict[str, None] = {}

    @classmethod
    def from_settings(
        cls, identity: IdentitySettings, pseudonym_key: bytes | None = None
    ) -> IdentityProcessor:
        return cls(IdentityRules.from_settings(identity, pseudonym_key))

    @property
    def clock_ms(self) -> int | None:
        return self._clock

    def take_link_rows(self) -> list[IdentityLinkRecord]:
        """The link periods changed since the last call (the ``identity_links`` rows)."""
        rows = list(self._link_rows.values())
        self._link_rows = {}
        return rows

    def _note_links(self, state: IdentifierState) -> None:
        identifier = identifier_pseudonym(state.kind, state.value, self.rules.pseudonym_key)
        links = state.links
        clock = self._clock if self._clock is not None else 0
        for index, (from_ms, customer) in enumerate(links):
            until = links[index + 1][0] if index + 1 < len(links) else None
            row = IdentityLinkRecord(
                link_id=f"{identifier}:{from_ms}",
                identifier=identifier,
                identifier_kind=state.kind,
                customer_id=customer,
                valid_from=from_ms,
                valid_to=until,
                changed_at=clock,
            )
            self._link_rows[row.link_id] = row

    def take_measures(self) -> IdentityMeasures:
        """The per-channel figures since the last call (the worker's metrics)."""
        measures, self.measures = self.measures, IdentityMeasures()
        return measures

    def held_now(self) -> int:
        """Events held at the moment, all identifiers together (a gauge)."""
        return sum(len(state.held) for state in self._identifiers.values())

    # -- input ----------------------------------------------------------------------

    def process(self, event: InteractionEvent) -> list[IdentityOutput]:
        """Advance the clock to the event, fire what is due, then apply the event.

        ``event`` must be validated and :func:`needs_identity`; anything else is a
        routing error and raises ``ValueError``.
        """
        kind, value = event.identifier_kind, event.identifier_value
        if not needs_identity(event) or kind is None or value is None:
            raise ValueError(
                f"event {event.event_id} is not an identity event "
                "(it needs an identifier, and no customer or type identified/unlinked)"
            )
        out: list[IdentityOutput] = []
        self.stats.events += 1
        at = event.occurred_at
        if self._clock is None or at > self._clock:
            self._clock = at
            self._drain(at, out)
        key = identity_key(kind, value)
        state = self._identifiers.get(key)
        if state is None:
            state = self._identifiers[key] = IdentifierState(kind, value)
        if state.knows(event.event_id):
            self.stats.duplicates += 1
            return out
        if event.type == IDENTIFIED:
            state.link_events[event.event_id] = at
            if state.link(at, event.customer_id):
                self.stats.links += 1
                self._note_links(state)
                _count(self.measures.linked, event.channel)
                if state.held:
                    first = min(state.held.values(), key=_order)
                    delay = max(0, at - first.occurred_at) / MS
                    self.measures.delays.append((first.channel, delay))
                self._reattribute(state, out)
        elif event.type == UNLINKED:
            state.link_events[event.event_id] = at
            if state.unlink(at, event.customer_id):
                self.stats.unlinks += 1
                self._note_links(state)
                self._reattribute(state, out)
            else:
                self.stats.unlinks_unmatched += 1
        else:
            contact_last, holders = state.contact_seen(event)
            owner = state.owner_at(contact_last)
            if contact_last == at and holders - {owner}:
                # The contact's latest event falls in another link than its earlier
                # ones: the whole contact moves (the event with it).
                state.held[event.event_id] = event
                if owner is None:
                    self.stats.held += 1
                self._reattribute(state, out)
            elif owner is None:
                state.held[event.event_id] = event
                self.stats.held += 1
            else:
                self._release(state, owner, event, out, contact_last)
        self._settle(key, state, out)
        return out

    def advance(self, clock_ms: int) -> list[IdentityOutput]:
        """Move the clock forward (live mode: wall clock minus skew) and fire what is due."""
        out: list[IdentityOutput] = []
        if self._clock is None or clock_ms > self._clock:
            self._clock = clock_ms
            self._drain(clock_ms, out)
        return out

    def end_of_input(self, input_end_ms: int | None = None) -> list[IdentityOutput]:
        """No more events: fire what is due, then release every held event as anonymous."""
        out: list[IdentityOutput] = []
        if input_end_ms is not None:
            out.extend(self.advance(input_end_ms))
        for key in sorted(self._identifiers):
            state = self._identifiers[key]
            if state.held:
                self.stats.expired_at_end += len(state.held)
                self._expire(state, out)
                self._settle(key, state, out)
        return out

    # -- state ------------------------------------------------------------------------

    def take_dirty(self) -> dict[str, dict[str, Any] | None]:
        """Identifier key -> state dict (None: evicted) of identifiers changed since last call."""
        dirty: dict[str, dict[str, Any] | None] = {}
        for key in self._dirty:
            state = self._identifiers.get(key)
            dirty[key] = None if state is None else state.to_state()
        self._dirty = {}
        return dirty

    def load_state(self, key: str, data: dict[str, Any]) -> None:
        """Restore one identifier (after a restart) and its timer."""
        state = IdentifierState.from_state(data)
        self._identifiers[key] = state
        self._schedule(key, state)

    def load_clock(self, clock_ms: int) -> None:
        if self._clock is None or clock_ms > self._clock:
            self._clock = clock_ms

    def to_state(self) -> dict[str, Any]:
        """The whole processor as one JSON-able dict (tests, snapshots)."""
        return {
            "v": STATE_VERSION,
            "clock_ms": self._clock,
            "identifiers": {
                key: self._identifiers[key].to_state() for key in sorted(self._identifiers)
            },
        }

    @classmethod
    def from_state(cls, rules: IdentityRules, data: dict[str, Any]) -> IdentityProcessor:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"identity state version {data.get('v')!r} is not {STATE_VERSION}")
        processor = cls(rules, clock_ms=data["clock_ms"])
        for key, state in data["identifiers"].items():
            processor.load_state(key, state)
        return processor

    # -- internals --------------------------------------------------------------------

    def _release(
        self,
        state: IdentifierState,
        owner: str,
        event: InteractionEvent,
        out: list[IdentityOutput],
        contact_last: int,
    ) -> None:
        """Release ``event`` to ``owner``, its contact's owner at ``contact_last`` (the
        contact's latest event time), with that link's start as identified_at."""
        state.released[event.event_id] = _Released(owner, False, event)
        link = state.link_at(contact_last)
        identified_at = None if link is None else link[0]
        out.append(Release(owner, replace(event, customer_id=owner), identified_at))
        self.stats.released += 1

    def _expire(self, state: IdentifierState, out: list[IdentityOutput]) -> None:
        """Release every held event as the identifier's anonymous customer."""
        anonymous = anonymous_customer(state.kind, state.value, self.rules.pseudonym_key)
        for event in sorted(state.held.values(), key=_order):
            _count(self.measures.expired, event.channel)
            state.released[event.event_id] = _Released(anonymous, True, event)
            out.append(Release(anonymous, replace(event, customer_id=anonymous)))
        state.held.clear()

    def _reattribute(self, state: IdentifierState, out: list[IdentityOutput]) -> None:
        """After a change of the links: move every retained event whose owner changed.

        The unattribute records come first, then the releases, each in event-time
        order, so a customer is told what it loses before another gains it.
        """
        taken: list[Unattribute] = []
        given: list[tuple[str, InteractionEvent]] = []
        retained = [*state.held.values(), *(r.event for r in state.released.values())]
        lasts = state.contact_lasts()
        for event in sorted(retained, key=_order):
            owner = state.owner_at(lasts[event.contact_id])
            released = state.released.get(event.event_id)
            if released is None:  # held
                if owner is not None:
                    del state.held[event.event_id]
                    given.append((owner, event))
                continue
            if owner == released.customer_key or (owner is None and released.anonymous):
                continue
            taken.append(Unattribute(released.customer_key, event.event_id))
            del state.released[event.event_id]
            if owner is None:
                state.held[event.event_id] = event  # _settle expires it if overdue
                self.stats.held += 1
            else:
                given.append((owner, event))
        out.extend(taken)
        self.stats.unattributed += len(taken)
        self.measures.reattributed += len(taken)
        for owner, event in given:
            self._release(state, owner, event, out, lasts[event.contact_id])

    def _settle(self, key: str, state: IdentifierState, out: list[IdentityOutput]) -> None:
        """Apply the bounds and the retention at the clock, then reschedule or evict."""
        rules = self.rules
        clock = self._clock
        if len(state.held) > rules.max_held:
            self.stats.expired_max_held += len(state.held)
            self._expire(state, out)
        elif (
            state.held
            and clock is not None
            and min(e.occurred_at for e in state.held.values()) + rules.hold_ms <= clock
        ):
            self.stats.expired_hold += len(state.held)
            self._expire(state, out)
        if clock is not None:
            horizon = clock - rules.unlink_window_ms
            # Released events older than the window stay where they are (a later
            # unlink changes only what comes after); forget them.
            for event_id in [i for i, r in state.released.items() if r.event.occurred_at < horizon]:
                del state.released[event_id]
            for event_id in [i for i, at in state.link_events.items() if at < horizon]:
                del state.link_events[event_id]
            # A link superseded before the window only serves events later than the
            # window, which their customers drop as late anyway.
            while len(state.links) >= 2 and state.links[1][0] < horizon:
                del state.links[0]
        self._dirty[key] = None
        if state.is_empty:
            del self._identifiers[key]
            self.stats.identifiers_evicted += 1
            return
        state.wake = None
        self._schedule(key, state)

    def _schedule(self, key: str, state: IdentifierState) -> None:
        due = state.next_due(self.rules)
        if due is not None and (state.wake is None or due < state.wake):
            state.wake = due
            heapq.heappush(self._timers, (due, key))

    def _drain(self, limit_ms: int, out: list[IdentityOutput]) -> None:
        timers = self._timers
        while timers and timers[0][0] <= limit_ms:
            due, key = heapq.heappop(timers)
            state = self._identifiers.get(key)
            if state is None or state.wake != due:
                continue  # stale: rescheduled or evicted
            self._settle(key, state, out)
