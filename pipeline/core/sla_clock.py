"""One running SLA clock: a policy's warning and deadline from one start.

:class:`pipeline.core.sla.ContactSla` holds the clocks of a contact; a clock
only says when it falls due, what has fired, and which replies stop it.
"""

from __future__ import annotations

from typing import Any

from pipeline.contract.event import AGENT, BOT
from pipeline.core.sla_policy import Policy


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
