"""SLA clocks of one contact: first reply and next reply, with warnings and breaches.

Pure logic: times are int epoch ms and the caller owns the clock. A
:class:`ContactSla` holds the clocks of one contact; the processor feeds it the
contact's events (:meth:`ContactSla.observe`) and asks it for what has fallen
due (:meth:`ContactSla.fire_due`). Every warning and breach fires exactly once
and carries its *due* time as ``fired_at``, so a replay and the live stream
emit the same records.

Rules (one contact, events in arrival order; the first reply goes by event time):

* The first-reply clock starts at the contact's earliest-dated
  ``customer_message`` or ``contact_started``: one dated earlier that arrives
  later moves it back (what it fired is sent again with the earlier times under
  the same ids, or retracted if a reply precedes it). A next-reply clock starts at a
  ``customer_message`` that follows a reply while no clock runs.
* The first reply is the earliest qualifying reply dated at or after the
  first-reply clock's start, whatever the arrival order: a reply that arrives
  before the message it answers (or dated before the start known so far) is
  kept and stops the clock when the message arrives (firing what fell due
  before the reply, as in order); a reply that
  arrives after a later-dated reply or after the contact's end, but is dated
  before them, stops the clock at its own time. A reply dated before a clock's
  start does not stop that clock.
* A reply (``agent_reply``) by an agent stops every running clock; a reply by a
  bot stops the clocks whose policy is not ``human_only``.
* The deadline is ``calendar.add(start, target)``, the warning
  ``calendar.add(start, warning_share * target)``; a clock is breached *at* its
  deadline, so a reply must come strictly before it.
* A reply that stops a breached clock emits one ``completed`` event with the
  overrun measured on the policy's calendar. Due warnings/breaches of a clock
  that a reply stops are fired first, so ``completed`` never precedes its
  ``breach`` even if the caller skipped :meth:`ContactSla.fire_due`.
* ``contact_ended`` stops the running clocks without firing them; no clock
  starts at a time after it (a message dated before the end that arrives after
  it still starts, and at once stops, the first-reply clock).
* A reply dated before a warning or breach that already fired (it arrived
  late) retracts it instead (:mod:`pipeline.core.retraction`), when
  :meth:`ContactSla.observe` is given the partition clock and a window; so does
  an end dated before it, and a reply dated before an earlier-applied stop
  (reply or end) of the first-reply clock.
* A clock keeps the policy version and target it started under
  (``policy_version`` on every record). A worker restarted with a changed
  policy restores the running clocks with their stored deadline, version and
  target; only clocks that start after the change use the new definition.
* The contact's ``queue`` and ``team`` are the non-null ones named by its
  latest-dated event that named one (ties: the greater name), so arrival order
  does not decide them; every record carries them.
* Policies are chosen per metric by
  :func:`pipeline.core.sla_policy.policies_for` with the contact's topic as
  known so far. When the topic becomes known (or changes), running
  clocks that have not fired yet move to the newly chosen policies; a clock that
  has fired keeps its policy, so an emitted record is never contradicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from pipeline.contract.event import (
    AGENT,
    AGENT_REPLY,
    BOT,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER_MESSAGE,
    InteractionEvent,
)
from pipeline.core import sla_state
from pipeline.core.calendar import Calendar
from pipeline.core.records import (
    FIRST_REPLY,
    SLA_BREACH,
    SLA_COMPLETED,
    SLA_RETRACTED,
    SLA_WARNING,
    SlaEvent,
)
from pipeline.core.retraction import retracts
from pipeline.core.sla_clock import Clock, dated_before, rehome_unfired
from pipeline.core.sla_policy import Policy, selection_for

MS_PER_SECOND: Final = 1000


class ContactSla:
    """The SLA clocks of one contact. Times are int epoch ms; the caller owns the clock."""

    __slots__ = (
        "_answered",
        "_clocks",
        "_early_replies",
        "_ended",
        "_ended_at",
        "_first_started_at",
        "_named_at",
        "_policies",
        "_replied_since_customer",
        "_selection",
        "_seqs",
        "breached",
        "breaches",
        "business_calendar",
        "channel",
        "contact_id",
        "customer_id",
        "due_ms",
        "first_reply_at",
        "first_reply_business_seconds",
        "first_reply_seconds",
        "identified_at",
        "is_idle",
        "queue",
        "team",
        "topic",
    )

    def __init__(
        self,
        *,
        customer_id: str,
        contact_id: str,
        channel: str,
        policies: Sequence[Policy],
        business_calendar: Calendar,
    ) -> None:
        self.customer_id = customer_id
        self.contact_id = contact_id
        self.channel = channel
        self.business_calendar = business_calendar
        self._policies = policies
        self.topic: str | None = None
        self.queue: str | None = None
        self.team: str | None = None
        # The contact's identified_at (not state: the contact keeps it and sets it
        # here on load), carried by the clocks' records.
        self.identified_at: int | None = None
        # Event times of the events that named the queue and the team (None: none
        # did, or a state written before they were kept).
        self._named_at: list[int | None] = [None, None]
        self._selection = selection_for(policies, channel, None)
        self._clocks: list[Clock] = []
        # The earliest unfired warning or deadline of the running clocks (None:
        # nothing to fire). The customer's scan for timed work reads it per
        # wake-up, so it is kept current by every change of the clocks
        # (_refresh_due) rather than recomputed per read.
        self.due_ms: int | None = None
        # No clock runs (breached clocks run until a reply or the contact's end);
        # kept current with due_ms, as the customer reads it per event.
        self.is_idle = True
        # Policy name -> last next_reply seq used; None until the first next-reply
        # clock, as most contacts never start one and a dict per contact adds up.
        self._seqs: dict[str, int] | None = None
        self._first_started_at: int | None = None
        self._replied_since_customer = False
        self._ended = False
        # Event time of the earliest end (None: not ended, or a state written
        # before it was kept, whose end stops every clock whatever its date).
        self._ended_at: int | None = None
        # Replies (event time, actor) that arrived before any clock started: one
        # dated after the customer's first message answers it when the message
        # arrives (arrival order must not decide; None: none).
        self._early_replies: list[tuple[int, str]] | None = None
        # First-reply clocks stopped by a reply or the end, with the event time
        # they stopped at: a reply dated earlier, arriving later, stops them
        # there instead (None: none).
        self._answered: list[tuple[Clock, int]] | None = None
        self.first_reply_at: int | None = None
        self.first_reply_seconds: float | None = None
        self.first_reply_business_seconds: float | None = None
        self.breached = False
        self.breaches = 0

    @classmethod
    def open(
        cls,
        *,
        customer_id: str,
        contact_id: str,
        channel: str,
        policies: Sequence[Policy],
        business_calendar: Calendar,
    ) -> ContactSla:
        """A contact with no clock running yet; ``policies`` are all resolved policies."""
        return cls(
            customer_id=customer_id,
            contact_id=contact_id,
            channel=channel,
            policies=policies,
            business_calendar=business_calendar,
        )

    # -- clock queries ---------------------------------------------------

    def next_due_ms(self) -> int | None:
        """The earliest unfired warning or breach time of the running clocks."""
        return self.due_ms

    @property
    def first_reply_breached(self) -> bool:
        """A first-reply clock of the contact stands breached (a retracted breach
        does not): a first reply, if one came, was late (service level)."""
        for clock in self._clocks:
            if clock.breached and clock.seq == 0 and clock.policy.spec.metric == FIRST_REPLY:
                return True
        # Stopped first-reply clocks are kept here (by a reply or the end).
        return any(clock.breached for clock, _stopped_at in self._answered or ())

    def _refresh_due(self) -> None:
        """Recompute :attr:`due_ms` and :attr:`is_idle` after the clocks changed."""
        self.is_idle = not self._clocks
        earliest: int | None = None
        for clock in self._clocks:
            if not clock.warned:
                due = clock.warning_at
            elif not clock.breached:
                due = clock.deadline
            else:
                continue
            if earliest is None or due < earliest:
                earliest = due
        self.due_ms = earliest

    # -- firing ----------------------------------------------------------

    def fire_due(self, clock_ms: int) -> list[SlaEvent]:
        """Every warning/breach due at or before ``clock_ms`` and not fired yet, in time order.

        Call it before :meth:`observe` of an event with ``occurred_at <= clock_ms``.
        """
        fired: list[SlaEvent] = []
        for clock in self._clocks:
            if (not clock.warned and clock.warning_at <= clock_ms) or (
                not clock.breached and clock.deadline <= clock_ms
            ):
                fired.extend(self._fire_clock(clock, clock_ms))
        if fired:
            self._refresh_due()
        if len(fired) > 1:
            fired.sort(key=lambda event: (event.fired_at, event.kind == SLA_BREACH, event.policy))
        return fired

    def _fire_clock(self, clock: Clock, clock_ms: int) -> list[SlaEvent]:
        fired: list[SlaEvent] = []
        if not clock.warned and clock.warning_at <= clock_ms:
            clock.warned = True
            fired.append(clock.record(self, SLA_WARNING, clock.warning_at))
        if not clock.breached and clock.deadline <= clock_ms:
            clock.breached = True
            self.breached = True
            self.breaches += 1
            fired.append(clock.record(self, SLA_BREACH, clock.deadline))
        return fired

    # -- events ----------------------------------------------------------

    def observe(
        self, event: InteractionEvent, clock_ms: int | None = None, retraction_window_ms: int = 0
    ) -> list[SlaEvent]:
        """Apply one event of this contact (arrival order); returns the records it causes.

        Only a reply returns records: the due warnings/breaches of the clocks it
        stops (normally already fired by :meth:`fire_due`), one ``completed``
        per stopped breached clock, or, given the partition clock ``clock_ms``
        and a window, one ``retracted`` per fired record the reply is dated
        before (:mod:`pipeline.core.retraction`).
        """
        if event.topic is not None and event.topic != self.topic:
            self.topic = event.topic
            self._selection = selection_for(self._policies, self.channel, self.topic)
            if self._clocks:
                self._move_to_chosen_policies()
        if event.queue is not None or event.team is not None:
            self._name_queue_team(event.queue, event.team, event.occurred_at)
        kind = event.type
        if kind == AGENT_REPLY:
            if event.actor == AGENT or event.actor == BOT:
                return self._reply(event.actor, event.occurred_at, clock_ms, retraction_window_ms)
            return []
        if kind == CUSTOMER_MESSAGE:
            return self._customer_message(event.occurred_at, clock_ms, retraction_window_ms)
        elif kind == CONTACT_STARTED:
            at = event.occurred_at
            if self._may_start(at):
                if self._first_started_at is None:
                    return self._start_first_reply(at)
                if at < self._first_started_at:
                    return self._move_first_start(at, clock_ms, retraction_window_ms)
        elif kind == CONTACT_ENDED:
            return self._end(event.occurred_at, clock_ms, retraction_window_ms)
        return []

    def _name_queue_team(self, queue: str | None, team: str | None, at: int) -> None:
        """Take the queue and team an event dated ``at`` names if it is the latest-dated
        to name one (ties: the greater name)."""
        named_at = self._named_at
        if queue is not None and _replaces(queue, at, self.queue, named_at[0]):
            self.queue = queue
            named_at[0] = at
        if team is not None and _replaces(team, at, self.team, named_at[1]):
            self.team = team
            named_at[1] = at

    def _may_start(self, at: int) -> bool:
        """Whether a clock may start at ``at``: not after the contact's end (by event time)."""
        return not self._ended or (self._ended_at is not None and at <= self._ended_at)

    def _customer_message(self, at: int, clock_ms: int | None, window_ms: int) -> list[SlaEvent]:
        if self._first_started_at is None:
            # Answered only by an earlier-arrived reply dated at or after it.
            self._replied_since_customer = False
            return self._start_first_reply(at) if self._may_start(at) else []
        if at < self._first_started_at and self._may_start(at):
            return self._move_first_start(at, clock_ms, window_ms)
        if self._ended:
            return []
        if self._replied_since_customer and not self._clocks:
            self._start_next_reply(at)
        self._replied_since_customer = False
        return []

    def _end(self, at: int, clock_ms: int | None, window_ms: int) -> list[SlaEvent]:
        """The contact ended at ``at``: its clocks stop there. A first-reply clock is
        kept as stopped, so a reply dated before the end that arrives after it still
        answers it; records it fired that the end precedes (a late end) are retracted."""
        self._ended = True
        if self._ended_at is not None and at >= self._ended_at:
            return []
        self._ended_at = at
        records: list[SlaEvent] = []
        for clock in self._clocks:
            if clock.seq == 0 and clock.policy.spec.metric == FIRST_REPLY:
                self._stop(clock, at, clock_ms, window_ms, False, records)
        for clock, stopped_at in list(self._answered or ()):
            if clock.start <= at < stopped_at:
                self._stop(clock, at, clock_ms, window_ms, False, records)
        self._clocks.clear()
        self.due_ms = None
        self.is_idle = True
        return records

    def _start_first_reply(self, at: int) -> list[SlaEvent]:
        """Start the first-reply clocks at ``at``. Replies that arrived earlier but are
        dated at or after ``at``, and an end that arrived earlier, stop them at once
        where they would have had the events come in event-time order."""
        self._first_started_at = at
        records: list[SlaEvent] = []
        early = self._early_replies
        self._early_replies = dated_before(early, at)
        ended_at = self._ended_at if self._ended else None
        for policy in self._selection.first:
            clock = Clock.started(policy, 0, at)
            self._run_or_stop(clock, early, ended_at, False, None, 0, records)
        for replied_at, actor in early or ():
            if at <= replied_at:
                self._replied_since_customer = True
                self._note_first_reply(actor, replied_at)
        self._refresh_due()
        return records

    def _run_or_stop(
        self,
        clock: Clock,
        early: list[tuple[int, str]] | None,
        stop_at: int | None,
        by_reply: bool,
        clock_ms: int | None,
        window_ms: int,
        records: list[SlaEvent],
    ) -> None:
        """A first-reply clock just (re)started: stop it at the earliest reply in
        ``early`` that answers it, or at ``stop_at`` if earlier; else it runs. What
        a moved clock had fired after the stop is retracted (within the window)."""
        for replied_at, actor in early or ():
            if (
                clock.start <= replied_at
                and clock.stopped_by(actor)
                and (
                    stop_at is None
                    or replied_at < stop_at
                    or (replied_at == stop_at and not by_reply)
                )
            ):
                stop_at, by_reply = replied_at, True
        if stop_at is None:
            self._clocks.append(clock)
            return
        # In order, what fell due up to an end fires before it (a reply fires it
        # itself).
        if not by_reply:
            records.extend(self._fire_clock(clock, stop_at))
        self._stop(clock, stop_at, clock_ms, window_ms, by_reply, records)

    def _move_first_start(self, at: int, clock_ms: int | None, window_ms: int) -> list[SlaEvent]:
        """A start dated before the first-reply clocks' start arrived after it (a queued
        start after the message): the clocks start at ``at`` instead, as in order.

        What they fired is sent again with the earlier times under the same ids
        (no second count); what falls due earlier fires when the clock passes it.
        """
        records: list[SlaEvent] = []
        self._first_started_at = at
        early = self._early_replies
        self._early_replies = dated_before(early, at)
        moved: list[tuple[Clock, int | None]] = []
        running: list[Clock] = []
        for clock in self._clocks:
            if clock.seq == 0 and clock.policy.spec.metric == FIRST_REPLY:
                moved.append((clock, None))
            else:
                running.append(clock)
        self._clocks = running
        moved.extend(self._answered or ())
        self._answered = None
        ended_at = self._ended_at if self._ended else None
        for old, stopped_at in moved:
            clock = Clock.started(old.policy, 0, at)
            clock.warned, clock.breached = old.warned, old.breached
            if clock.warned:
                records.append(clock.record(self, SLA_WARNING, clock.warning_at))
            if clock.breached:
                records.append(clock.record(self, SLA_BREACH, clock.deadline))
            by_reply = stopped_at is not None and stopped_at != ended_at
            self._run_or_stop(clock, early, stopped_at, by_reply, clock_ms, window_ms, records)
        for replied_at, actor in early or ():
            if at <= replied_at:
                self._note_first_reply(actor, replied_at)
        if self.first_reply_at is not None:
            self._record_first_reply(self.first_reply_at)
        self._refresh_due()
        return records

    def _start_next_reply(self, at: int) -> None:
        for policy in self._selection.next:
            self._clocks.append(Clock.started(policy, self._next_seq(policy), at))
        self._refresh_due()

    def _next_seq(self, policy: Policy) -> int:
        seqs = self._seqs
        if seqs is None:
            seqs = self._seqs = {}
        seq = seqs.get(policy.spec.name, 0) + 1
        seqs[policy.spec.name] = seq
        return seq

    def _reply(
        self, actor: str, at: int, clock_ms: int | None, retraction_window_ms: int
    ) -> list[SlaEvent]:
        self._replied_since_customer = True
        if self._first_started_at is None or at < self._first_started_at:
            # It may answer a first message (or queued start) that has not
            # arrived yet, dated before it.
            if self._early_replies is None:
                self._early_replies = []
            self._early_replies.append((at, actor))
            return []
        self._note_first_reply(actor, at)
        records: list[SlaEvent] = []
        answered = self._answered
        if answered:
            for clock, stopped_at in list(answered):
                if clock.start <= at < stopped_at and clock.stopped_by(actor):
                    self._stop(clock, at, clock_ms, retraction_window_ms, True, records)
        if not self._clocks:
            return records
        running: list[Clock] = []
        for clock in self._clocks:
            # A reply dated before the clock started (it arrived late) answered
            # an earlier message, not this one.
            if not clock.stopped_by(actor) or at < clock.start:
                running.append(clock)
                continue
            self._stop(clock, at, clock_ms, retraction_window_ms, True, records)
        self._clocks = running
        self._refresh_due()
        return records

    def _stop(
        self,
        clock: Clock,
        at: int,
        clock_ms: int | None,
        window_ms: int,
        by_reply: bool,
        records: list[SlaEvent],
    ) -> None:
        """Stop ``clock`` at event time ``at`` (a reply, or the end): fire what fell
        due before, retract what fired after (within the window), complete a breach
        a reply stops. A first-reply clock is kept as answered at ``at``."""
        if by_reply:
            records.extend(self._fire_clock(clock, at))
        if clock_ms is not None and window_ms > 0 and clock.has_fired:
            self._retract(clock, at, clock_ms, window_ms, records)
        if by_reply and clock.breached:
            overrun = clock.policy.calendar.elapsed(clock.deadline, at)
            records.append(
                clock.record(self, SLA_COMPLETED, at, replied_at=at, overrun_seconds=overrun)
            )
        if clock.seq == 0 and clock.policy.spec.metric == FIRST_REPLY:
            answered = self._answered
            if answered is None:
                answered = self._answered = []
            for index, (kept, _) in enumerate(answered):
                if kept is clock:
                    answered[index] = (clock, at)
                    break
            else:
                answered.append((clock, at))

    def _note_first_reply(self, actor: str, at: int) -> None:
        """Take a reply as the first reply if it qualifies and is the earliest yet."""
        started = self._first_started_at
        if (
            started is not None
            and started <= at
            and (self.first_reply_at is None or at < self.first_reply_at)
            and (actor == AGENT or not self._selection.first_needs_human)
        ):
            self._record_first_reply(at)

    def _retract(
        self, clock: Clock, at: int, clock_ms: int, window_ms: int, records: list[SlaEvent]
    ) -> None:
        """Take back the fired records of ``clock`` that a reply dated ``at`` precedes."""
        if clock.warned and retracts(clock.warning_at, at, clock_ms, window_ms):
            clock.warned = False
            records.append(clock.record(self, SLA_RETRACTED, clock_ms, at, None, SLA_WARNING))
        if clock.breached and retracts(clock.deadline, at, clock_ms, window_ms):
            clock.breached = False
            self.breaches -= 1
            self.breached = self.breaches > 0
            records.append(clock.record(self, SLA_RETRACTED, clock_ms, at, None, SLA_BREACH))

    def _record_first_reply(self, at: int) -> None:
        started = self._first_started_at
        assert started is not None  # the caller checked; a reply before any start is no answer
        self.first_reply_at = at
        self.first_reply_seconds = max(0, at - started) / MS_PER_SECOND
        self.first_reply_business_seconds = self.business_calendar.elapsed(started, at)

    def _move_to_chosen_policies(self) -> None:
        """Re-home unfired clocks on the policies chosen for the (new) topic."""
        rehomed = rehome_unfired(self._clocks, self._selection, self._next_seq)
        if rehomed is not None:
            self._clocks = rehomed
            self._refresh_due()

    # -- state (the stored form lives in pipeline/core/sla_state.py) ----------

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot (str/int/float/bool/None/list/dict only)."""
        return sla_state.to_state(self)

    def to_row(self) -> list[Any]:
        """A compact JSON-able snapshot for the customer's state (see :meth:`from_row`)."""
        return sla_state.to_row(self)

    @classmethod
    def from_row(
        cls,
        row: list[Any],
        *,
        customer_id: str,
        contact_id: str,
        channel: str,
        policies: Sequence[Policy],
        business_calendar: Calendar,
    ) -> ContactSla:
        """Rebuild a contact from :meth:`to_row` (same rules as :meth:`from_state`)."""
        sla = cls(
            customer_id=customer_id,
            contact_id=contact_id,
            channel=channel,
            policies=policies,
            business_calendar=business_calendar,
        )
        sla_state.load_row(sla, row, policies)
        return sla

    @classmethod
    def from_state(
        cls, state: dict[str, Any], policies: Sequence[Policy], business_calendar: Calendar
    ) -> ContactSla:
        """Rebuild a contact from :meth:`to_state`.

        Stored deadlines are kept as they were. A clock whose policy is no longer
        configured is dropped: nothing can be said about a target that is gone.
        """
        sla = cls(
            customer_id=state["customer_id"],
            contact_id=state["contact_id"],
            channel=state["channel"],
            policies=policies,
            business_calendar=business_calendar,
        )
        sla_state.load_state(sla, state, policies)
        return sla


def _replaces(name: str, at: int, current: str | None, since: int | None) -> bool:
    """Whether ``name``, named by an event dated ``at``, replaces ``current`` (named
    at ``since``; None: nothing known): the later date wins, ties the greater name."""
    if since is None or current is None or at > since:
        return True
    return at == since and name > current
