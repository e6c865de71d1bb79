"""Needs (cases) and bouncing of one customer.

A need is every contact of one customer on the same need key within the need
window: the key is the producer's ``need_id`` when an event of the contact
carries one, else the contact's ``topic``; a contact with neither belongs to no
need. A contact joins the open need of its key when it starts at most ``window``
after the need's last contact activity (exactly ``window`` still joins); a need
closes when the partition clock passes ``last + window + grace`` (event time, like
a session's close), and a contact of that key after the close opens a new need.

Bouncing ("pompottelu"): a need that reaches ``min_contacts`` contacts over at
least ``min_channels`` channels while none of its contacts has ended resolved is
bounced; one ``bounced`` journey signal goes out at the contact that crosses the
threshold, so ops can act while the customer is still in the journey.

Pure logic: :class:`NeedBook` is driven by the customer's state (which owns the
clock and the timers) through ``place``/``refresh``/``close``.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from pipeline.contract.event import RESOLVED
from pipeline.core.records import (
    BOUNCED,
    NEED_FINAL,
    NEED_OPEN,
    NEED_RETRACTED,
    JourneySignal,
    NeedRecord,
    OutputRecord,
)

MS: Final = 1000


class SlaView(Protocol):
    first_reply_seconds: float | None
    breaches: int


class ContactView(Protocol):
    """What a need reads of the core's contact."""

    contact_id: str
    channel: str
    started_at: int
    ended_at: int | None
    outcome: str | None
    topic: str | None
    last_at: int
    switched_into: bool
    sla: Any

    @property
    def first_contact_resolved(self) -> bool | None: ...


class NeedRules:
    """The need window and the bounce threshold, in integer milliseconds.

    ``settle_ms`` (``CoreRules.settle_ms``: grace + identity hold) is how long after
    the contact that decides it a bounce is decided, and after the window a need
    closes: a contact identity held can still join."""

    __slots__ = ("min_channels", "min_contacts", "settle_ms", "window_ms")

    def __init__(
        self, window_ms: int, settle_ms: int, min_contacts: int, min_channels: int
    ) -> None:
        self.window_ms = window_ms
        self.settle_ms = settle_ms
        self.min_contacts = min_contacts
        self.min_channels = min_channels


def need_key(need_id: str | None, topic: str | None) -> str | None:
    """The key a contact's need is tracked under (None: it belongs to no need)."""
    if need_id is not None and need_id != "":
        return "n:" + need_id
    if topic is not None:
        return "t:" + topic
    return None


def implicit_name(customer_id: str, topic: str | None, opened_at: int) -> str:
    """The name of a need keyed by topic: the customer, the topic and the start of
    its earliest contact."""
    return f"{customer_id}:{topic}:{opened_at}"


class NeedContact:
    """A contact of a need, as far as the need record reads it (kept after the core
    forgets the contact)."""

    __slots__ = (
        "breaches",
        "channel",
        "contact_id",
        "ended_at",
        "fcr",
        "handling_seconds",
        "last_at",
        "outcome",
        "started_at",
        "switched_into",
        "wait_seconds",
    )

    def __init__(self, contact_id: str, channel: str, started_at: int) -> None:
        self.contact_id = contact_id
        self.channel = channel
        self.started_at = started_at
        self.ended_at: int | None = None
        self.outcome: str | None = None
        self.last_at = started_at
        self.wait_seconds: float | None = None
        self.handling_seconds: float | None = None
        self.breaches = 0
        self.switched_into = False
        self.fcr: bool | None = None

    def copy_from(self, contact: ContactView) -> None:
        self.started_at = contact.started_at
        self.ended_at = contact.ended_at
        self.outcome = contact.outcome
        self.last_at = contact.last_at
        sla = contact.sla
        self.wait_seconds = sla.first_reply_seconds
        self.breaches = sla.breaches
        self.switched_into = contact.switched_into
        self.fcr = contact.first_contact_resolved

    def to_row(self) -> list[Any]:
        return [
            self.contact_id,
            self.channel,
            self.started_at,
            self.ended_at,
            self.outcome,
            self.last_at,
            self.wait_seconds,
            self.handling_seconds,
            self.breaches,
            self.switched_into,
            self.fcr,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> NeedContact:
        item = cls(row[0], row[1], row[2])
        item.ended_at, item.outcome, item.last_at = row[3], row[4], row[5]
        item.wait_seconds, item.handling_seconds = row[6], row[7]
        item.breaches, item.switched_into, item.fcr = row[8], row[9], row[10]
        return item


def _order(item: NeedContact) -> tuple[int, str]:
    return item.started_at, item.contact_id


class Need:
    """One open need."""

    __slots__ = (
        "bounce_due",
        "bounced_at",
        "contacts",
        "feedback_count",
        "feedback_sum",
        "key",
        "last_at",
        "need_id",
        "opened_at",
        "topic",
        "version",
    )

    def __init__(self, key: str, need_id: str, topic: str | None, opened_at: int) -> None:
        self.key = key
        self.need_id = need_id
        self.topic = topic
        self.opened_at = opened_at
        self.last_at = opened_at
        self.contacts: list[NeedContact] = []
        self.feedback_sum = 0
        self.feedback_count = 0
        self.bounced_at: int | None = None
        # When the bounce is decided: the crossing contact's start + settle_ms + 1
        # (None: no contact crosses the threshold yet, or it is decided).
        self.bounce_due: int | None = None
        self.version = 0

    def find(self, contact_id: str) -> NeedContact | None:
        for item in self.contacts:
            if item.contact_id == contact_id:
                return item
        return None

    def touch(self) -> None:
        """Recompute the opening and the last activity from the contacts."""
        self.contacts.sort(key=_order)
        last = self.last_at
        opened = self.opened_at
        for item in self.contacts:
            if item.last_at > last:
                last = item.last_at
            if item.ended_at is not None and item.ended_at > last:
                last = item.ended_at
            if item.started_at < opened:
                opened = item.started_at
        self.last_at = last
        self.opened_at = opened

    def resolved_before(self, at: int) -> bool:
        """Whether a contact of the need ended resolved at or before ``at``."""
        for item in self.contacts:
            ended = item.ended_at
            if item.outcome == RESOLVED and ended is not None and ended <= at:
                return True
        return False

    def distinct_channels(self) -> int:
        seen: dict[str, None] = {}
        for item in self.contacts:
            seen[item.channel] = None
        return len(seen)

    def due_ms(self, rules: NeedRules) -> int:
        """When the need closes."""
        return self.last_at + rules.window_ms + rules.settle_ms + 1

    def next_due(self, rules: NeedRules) -> int:
        """The need's next timed work: its bounce decision, else its close."""
        bounce_due = self.bounce_due
        return bounce_due if bounce_due is not None else self.due_ms(rules)

    def crossing(self, rules: NeedRules) -> NeedContact | None:
        """The first contact (by start) at which the need has the bounce threshold's
        contacts and channels (None: it has not)."""
        contacts = self.contacts
        if len(contacts) < rules.min_contacts:
            return None
        seen: dict[str, None] = {}
        for index, item in enumerate(contacts):
            seen[item.channel] = None
            if index + 1 >= rules.min_contacts and len(seen) >= rules.min_channels:
                return item
        return None

    def record(self, customer_id: str, status: str, closed_at: int | None) -> NeedRecord:
        self.version += 1
        contacts = self.contacts
        channels = [item.channel for item in contacts]
        switches = 0
        for i in range(1, len(channels)):
            if channels[i] != channels[i - 1]:
                switches += 1
        wait = 0.0
        handling = 0.0
        handled = False
        breaches = 0
        failures = 0
        last_ended: NeedContact | None = None
        for item in contacts:
            if item.wait_seconds is not None:
                wait += item.wait_seconds
            if item.handling_seconds is not None:
                handling += item.handling_seconds
                handled = True
            breaches += item.breaches
            if item.switched_into:
                failures += 1
            ended = item.ended_at
            if ended is not None and (
                last_ended is None
                or (ended, item.contact_id) > (last_ended.ended_at or 0, last_ended.contact_id)
            ):
                last_ended = item
        first = contacts[0] if contacts else None
        count = self.feedback_count
        return NeedRecord(
            need_id=self.need_id,
            customer_id=customer_id,
            topic=self.topic,
            status=status,
            opened_at=self.opened_at,
            last_contact_at=self.last_at,
            closed_at=closed_at,
            contacts=len(contacts),
            channels=channels,
            channel_switches=switches,
            switch_failures=failures,
            first_contact_resolved=first.fcr if first is not None else None,
            resolved=last_ended is not None and last_ended.outcome == RESOLVED,
            customer_wait_seconds=round(wait, 3),
            handling_seconds=round(handling, 3) if handled else None,
            sla_breaches=breaches,
            feedback_count=count,
            feedback_average=self.feedback_sum / count if count else None,
            bounced=self.bounced_at is not None,
            bounced_at=self.bounced_at,
            first_channel=first.channel if first is not None else "",
            contact_ids=[item.contact_id for item in contacts],
            version=self.version,
        )

    def to_state(self) -> list[Any]:
        return [
            self.key,
            self.need_id,
            self.topic,
            self.opened_at,
            self.last_at,
            [item.to_row() for item in self.contacts],
            self.feedback_sum,
            self.feedback_count,
            self.bounced_at,
            self.version,
            self.bounce_due,
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> Need:
        need = cls(state[0], state[1], state[2], state[3])
        need.last_at = state[4]
        need.contacts = [NeedContact.from_row(row) for row in state[5]]
        need.feedback_sum, need.feedback_count = state[6], state[7]
        need.bounced_at, need.version = state[8], state[9]
        # Written before bounces were decided a grace after the crossing: the next
        # contact that joins schedules the decision.
        need.bounce_due = state[10] if len(state) > 10 else None
        return need


class NeedBook:
    """The open needs of one customer, and which need each contact joined."""

    __slots__ = ("by_contact", "open", "rules")

    def __init__(self, rules: NeedRules) -> None:
        self.rules = rules
        self.open: dict[str, Need] = {}
        # contact id -> key of the open need it joined.
        self.by_contact: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.open)

    def place(
        self,
        customer_id: str,
        contact: ContactView,
        need_id: str | None,
        handling_seconds: float | None,
        out: list[OutputRecord],
    ) -> int | None:
        """An event of ``contact`` was applied: join it to its need (opening one if
        none is open for its key, or if the open one's window passed before the
        contact started), add the event's handling time, and signal a bounce. Sends
        an open update when the contact has ended. Returns the due time of the
        need's close (None: the contact belongs to no need)."""
        rules = self.rules
        contact_id = contact.contact_id
        key = self.by_contact.get(contact_id)
        need = self.open.get(key) if key is not None else None
        joined = False
        if need is None:
            key = need_key(need_id, contact.topic)
            if key is None:
                return None
            need = self.open.get(key)
            if need is not None and contact.started_at > need.last_at + rules.window_ms:
                # Its timer has not fired yet (the clock is within the grace).
                self.close(customer_id, key, need.due_ms(rules), out)
                need = None
            if need is None:
                explicit = need_id is not None and need_id != ""
                name = (
                    need_id
                    if explicit
                    else implicit_name(customer_id, contact.topic, contact.started_at)
                )
                need = Need(key, name or "", contact.topic, contact.started_at)
                self.open[key] = need
            elif need.topic is None and contact.topic is not None:
                need.topic = contact.topic
            need.contacts.append(NeedContact(contact_id, contact.channel, contact.started_at))
            self.by_contact[contact_id] = key
            joined = True
        item = need.find(contact_id)
        if item is None:
            return None  # unreachable: the contact was joined above
        item.copy_from(contact)
        if handling_seconds is not None:
            item.handling_seconds = (item.handling_seconds or 0.0) + handling_seconds
        need.touch()
        if need.key[0] == "t":
            self._name_after_earliest(customer_id, need, out)
        if joined and need.bounced_at is None:
            self._schedule_bounce(need)
        if contact.ended_at is not None:
            out.append(need.record(customer_id, NEED_OPEN, None))
        return need.next_due(rules)

    def _name_after_earliest(self, customer_id: str, need: Need, out: list[OutputRecord]) -> None:
        """A need without a producer's id is named after its earliest contact, so that
        the name does not depend on which contact arrived first: when an earlier one
        joins, the need is renamed, and a record sent under the old name is retracted
        (a bounce signal already sent keeps its id)."""
        name = implicit_name(customer_id, need.topic, need.opened_at)
        if name == need.need_id:
            return
        if need.version:
            out.append(need.record(customer_id, NEED_RETRACTED, None))
        need.need_id = name

    def _schedule_bounce(self, need: Need) -> None:
        """A contact joined a need that has not bounced: the bounce is decided settle_ms
        after the contact that crosses the threshold starts (a contact that started
        earlier and joins later may move it earlier)."""
        crossing = need.crossing(self.rules)
        if crossing is not None:
            due = crossing.started_at + self.rules.settle_ms + 1
            if need.bounce_due is None or due < need.bounce_due:
                need.bounce_due = due

    def _decide_bounce(self, customer_id: str, need: Need, out: list[OutputRecord]) -> None:
        """Decide the bounce: the clock passed the crossing contact's start + settle_ms, so
        every event dated before that start has come (or is late). The need bounced
        unless one of its contacts ended resolved at or before that start; then an
        open update carries it. Not bounced is decided again when another contact
        joins (one that started earlier may cross before the resolution)."""
        need.bounce_due = None
        crossing = need.crossing(self.rules)
        if (
            crossing is None
            or need.bounced_at is not None
            or need.resolved_before(crossing.started_at)
        ):
            return
        crossed_at = crossing.started_at
        need.bounced_at = crossed_at
        first = need.contacts[0]
        ended = first.ended_at
        out.append(
            JourneySignal(
                signal_id=f"{need.need_id}:{BOUNCED}",
                kind=BOUNCED,
                customer_id=customer_id,
                from_contact_id=first.contact_id,
                from_channel=first.channel,
                # As of the crossing: None if the first contact was still open.
                from_outcome=first.outcome if ended is not None and ended <= crossed_at else None,
                to_contact_id=crossing.contact_id,
                to_channel=crossing.channel,
                gap_seconds=(crossed_at - first.started_at) / MS,
                topic=need.topic,
                occurred_at=crossed_at,
            )
        )
        out.append(need.record(customer_id, NEED_OPEN, None))

    def refresh(self, contact: ContactView) -> None:
        """Take over what changed of a contact outside its events (a breach, a switch
        failure into it, its FCR decision); no record goes out until the next end
        or the close."""
        key = self.by_contact.get(contact.contact_id)
        if key is None:
            return
        need = self.open.get(key)
        if need is None:
            return
        item = need.find(contact.contact_id)
        if item is not None:
            item.copy_from(contact)
            need.touch()

    def note_feedback(self, contact_id: str, score: int | None) -> None:
        """A feedback score about a contact of an open need counts in its average."""
        if score is None:
            return
        key = self.by_contact.get(contact_id)
        need = self.open.get(key) if key is not None else None
        if need is not None:
            need.feedback_sum += score
            need.feedback_count += 1

    def next_due(self) -> tuple[int, str] | None:
        """(due, key) of the earliest timed work of a need (ties: key): a bounce
        decision or a close."""
        rules = self.rules
        found = False
        best_due, best_key = 0, ""
        for key, need in self.open.items():
            due = need.next_due(rules)
            if not found or due < best_due or (due == best_due and key < best_key):
                found, best_due, best_key = True, due, key
        return (best_due, best_key) if found else None

    def fire(self, customer_id: str, key: str, at: int, out: list[OutputRecord]) -> None:
        """The timed work of the need of ``key`` due at clock ``at``: its bounce
        decision, else its close."""
        need = self.open.get(key)
        if need is None:
            return
        bounce_due = need.bounce_due
        if bounce_due is not None and bounce_due <= at:
            self._decide_bounce(customer_id, need, out)
            if need.due_ms(self.rules) > at:
                return
        self.close(customer_id, key, at, out)

    def close(self, customer_id: str, key: str, at: int, out: list[OutputRecord]) -> None:
        """Close the need of ``key`` at clock ``at`` (a bounce not decided yet is
        decided first): its final record goes out."""
        need = self.open.get(key)
        if need is None:
            return
        if need.bounce_due is not None:
            self._decide_bounce(customer_id, need, out)
        del self.open[key]
        for item in need.contacts:
            if self.by_contact.get(item.contact_id) == key:
                del self.by_contact[item.contact_id]
        out.append(need.record(customer_id, NEED_FINAL, at))

    def finish(self, customer_id: str, out: list[OutputRecord]) -> None:
        """End of input: every open need decides its bounce and closes at its due time."""
        while self.open:
            found = self.next_due()
            if found is None:
                return
            self.fire(customer_id, found[1], found[0], out)

    def to_state(self) -> list[Any]:
        return [need.to_state() for need in self.open.values()]

    @classmethod
    def from_state(cls, state: list[Any], rules: NeedRules) -> NeedBook:
        book = cls(rules)
        for raw in state:
            need = Need.from_state(raw)
            book.open[need.key] = need
            for item in need.contacts:
                book.by_contact[item.contact_id] = need.key
        return book
