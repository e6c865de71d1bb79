"""One running SLA clock: a policy's warning and deadline from one start.

:class:`pipeline.core.sla.ContactSla` holds the clocks of a contact; a clock
says when it falls due, what has fired, which replies stop it, and builds its
records. :func:`rehome_unfired` moves a contact's clocks to the policies its topic
chose; :func:`dated_before` keeps the early replies that may answer a start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipeline.contract.event import AGENT, BOT
from pipeline.core.records import NEXT_REPLY, SlaEvent
from pipeline.core.sla_policy import Policy, PolicySelection

if TYPE_CHECKING:
    from pipeline.core.sla import ContactSla


class Clock:
    """One running clock of one policy; ``warned``/``breached`` say what has fired."""

    __slots__ = (
        "breached",
        "deadline",
        "policy",
        "seq",
        "start",
        "target_seconds",
        "version",
        "warned",
        "warning_at",
    )

    def __init__(
        self,
        policy: Policy,
        seq: int,
        start: int,
        warning_at: int,
        deadline: int,
        warned: bool = False,
        breached: bool = False,
        version: str | None = None,
        target_seconds: float | None = None,
    ) -> None:
        self.policy = policy
        self.seq = seq
        self.start = start
        self.warning_at = warning_at
        self.deadline = deadline
        self.warned = warned
        self.breached = breached
        # What the clock started under; differs from ``policy`` only when the
        # policy changed while the clock ran (restored from state).
        self.version: str = policy.version if version is None else version
        self.target_seconds: float = (
            policy.spec.target_seconds if target_seconds is None else target_seconds
        )

    @classmethod
    def started(cls, policy: Policy, seq: int, start: int) -> Clock:
        if policy.wall_time:
            return cls(policy, seq, start, start + policy.warning_ms, start + policy.target_ms)
        spec, calendar = policy.spec, policy.calendar
        return cls(
            policy,
            seq,
            start,
            warning_at=calendar.add(start, spec.warning_share * spec.target_seconds),
            deadline=calendar.add(start, spec.target_seconds),
        )

    @property
    def has_fired(self) -> bool:
        return self.warned or self.breached

    def next_due(self) -> int | None:
        if not self.warned:
            return self.warning_at
        if not self.breached:
            return self.deadline
        return None

    def stopped_by(self, actor: str) -> bool:
        return actor == AGENT or (actor == BOT and not self.policy.spec.human_only)

    def record(
        self,
        contact: ContactSla,
        kind: str,
        fired_at: int,
        replied_at: int | None = None,
        overrun_seconds: float | None = None,
        id_kind: str | None = None,
    ) -> SlaEvent:
        """The record of this clock of ``contact``: a warning, breach, completion or
        retraction (``kind``) at ``fired_at``. A retraction is keyed like the record
        it cancels (``id_kind``)."""
        spec = self.policy.spec
        key_kind = kind if id_kind is None else id_kind
        return SlaEvent(
            sla_event_id=f"{contact.contact_id}:{spec.name}:{spec.metric}:{self.seq}:{key_kind}",
            kind=kind,
            customer_id=contact.customer_id,
            contact_id=contact.contact_id,
            channel=contact.channel,
            policy=spec.name,
            metric=spec.metric,
            clock_started_at=self.start,
            deadline=self.deadline,
            target_seconds=self.target_seconds,
            calendar=self.policy.calendar.name,
            fired_at=fired_at,
            replied_at=replied_at,
            overrun_seconds=overrun_seconds,
            policy_version=self.version,
            queue=contact.queue,
            team=contact.team,
            identified_at=contact.identified_at,
        )

    def to_state(self) -> list[Any]:
        return [
            self.policy.spec.name,
            self.seq,
            self.start,
            self.warning_at,
            self.deadline,
            self.warned,
            self.breached,
        ]


def rehome_unfired(
    clocks: list[Clock], selection: PolicySelection, next_seq: Callable[[Policy], int]
) -> list[Clock] | None:
    """The clocks after the contact's topic chose the policies of ``selection``:
    a clock that has not fired and whose policy is no longer chosen restarts, same
    start, on the chosen policy of its metric (a next-reply clock takes the next
    ``next_seq`` of that policy); a clock that has fired keeps its policy, so an
    emitted record is never contradicted. None: no clock moves."""
    chosen = (*selection.first, *selection.next)
    chosen_names = {p.spec.name for p in chosen}
    kept: list[Clock] = []
    moved: dict[str, tuple[int, int]] = {}  # metric -> (start, seq) of the replaced clocks
    for clock in clocks:
        spec = clock.policy.spec
        if spec.name in chosen_names or clock.has_fired:
            kept.append(clock)
        else:
            moved[spec.metric] = (clock.start, clock.seq)
    if not moved:
        return None
    running_names = {clock.policy.spec.name for clock in kept}
    for policy in chosen:
        spec = policy.spec
        if spec.metric not in moved or spec.name in running_names:
            continue
        start, seq = moved[spec.metric]
        if spec.metric == NEXT_REPLY:
            seq = next_seq(policy)
        kept.append(Clock.started(policy, seq, start))
    return kept


def dated_before(replies: list[tuple[int, str]] | None, at: int) -> list[tuple[int, str]] | None:
    """The replies ``(event time, actor)`` dated before ``at``: kept, as they may
    answer an earlier-dated start that has not arrived yet (None: none)."""
    kept = [reply for reply in replies or () if reply[0] < at]
    return kept or None
