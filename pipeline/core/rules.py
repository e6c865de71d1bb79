"""The event-time rules one customer's state machine runs by, in integer milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pipeline.core.needs import NeedRules
from pipeline.core.records import SWITCH_FAILURE

MS: Final = 1000


@dataclass(frozen=True, slots=True)
class CoreRules:
    """The event-time rules in integer milliseconds, plus what opens SLA clocks."""

    gap_ms: int
    grace_ms: int
    switch_window_ms: int
    false_resolution_ms: int
    dedup_retention_ms: int
    policies: Sequence[Any]
    business_calendar: Any
    sla_type: Any  # a class with ContactSla's open()/from_state()
    # Channels whose open contacts keep their journey open (the customer is with
    # us until the contact ends), and for how long at most after the contact's start.
    synchronous: frozenset[str] = frozenset()
    max_open_contact_ms: int = 4 * 3600 * MS
    # How long after a warning/breach fell due a reply dated before it can still
    # retract it (pipeline/core/retraction.py); 0: never.
    retraction_window_ms: int = 0
    # The same for an event with a channel identifier: identity may have held it
    # (up to identity.hold), and the hold must not cost it the retraction; at least
    # hold + grace (0 while retraction is off). pipeline/core/processor.py sets it.
    identifier_retraction_window_ms: int = 0
    # Needs (pipeline/core/needs.py): the window after a need's last contact, and
    # the bounce threshold.
    need_window_ms: int = 7 * 86400 * MS
    bounce_min_contacts: int = 3
    bounce_min_channels: int = 2
    # identity.hold: a contact identity held reaches its customer up to this long
    # after it started (0: no identity). Pairs and bounces wait for it.
    identity_hold_ms: int = 0
    need_rules: NeedRules = field(init=False, compare=False, repr=False)
    # Derived once, read per event: an event this far behind the clock is late,
    # and a session closes this long after its last event.
    late_ms: int = field(init=False, compare=False, repr=False)
    close_after_ms: int = field(init=False, compare=False, repr=False)
    # How long after the contact that decides it a switch pair, a repeat check or a
    # bounce settles: the grace, plus the hold, so that a contact identity held
    # (released up to identity.hold after its start) still takes its place.
    settle_ms: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "late_ms", self.gap_ms + self.grace_ms)
        object.__setattr__(self, "close_after_ms", self.gap_ms + self.grace_ms + 1)
        object.__setattr__(self, "settle_ms", self.grace_ms + self.identity_hold_ms)
        object.__setattr__(
            self,
            "need_rules",
            NeedRules(
                self.need_window_ms,
                self.settle_ms,
                self.bounce_min_contacts,
                self.bounce_min_channels,
            ),
        )

    @property
    def contact_retention_ms(self) -> int:
        # An unended, idle contact outside any open session (a web-message thread
        # waiting for the customer) is kept this long after its last event so its
        # SLA clock numbering continues; the longest window the core knows.
        return max(self.switch_window_ms, self.false_resolution_ms)

    def window_ms(self, kind: str) -> int:
        return self.switch_window_ms if kind == SWITCH_FAILURE else self.false_resolution_ms
