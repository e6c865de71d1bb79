"""SLA policies: the configured targets with their calendars, and which apply to a contact.

A :class:`Policy` is a :class:`PolicySpec` with its :class:`Calendar` and its
targets in whole milliseconds. :func:`policies_for` chooses the policies of one
(channel, topic); :func:`selection_for` caches that choice, split by metric, for
:class:`pipeline.core.sla.ContactSla`, which asks for it per contact and per
change of topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pipeline.core.calendar import AlwaysOpen, Calendar, duration_ms
from pipeline.core.records import FIRST_REPLY, NEXT_REPLY
from pipeline.errors import ConfigError
from pipeline.settings import PolicySpec


@dataclass(frozen=True, slots=True)
class Policy:
    """A :class:`PolicySpec` with its :class:`Calendar` object."""

    spec: PolicySpec
    calendar: Calendar
    # Derived once: the warning and the target in whole ms, and whether open
    # time is wall time (then a deadline is a sum, not a calendar walk).
    warning_ms: int = field(init=False, compare=False, repr=False)
    target_ms: int = field(init=False, compare=False, repr=False)
    wall_time: bool = field(init=False, compare=False, repr=False)
    version: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        spec = self.spec
        object.__setattr__(self, "version", spec.effective_version)
        object.__setattr__(
            self, "warning_ms", duration_ms(spec.warning_share * spec.target_seconds)
        )
        object.__setattr__(self, "target_ms", duration_ms(spec.target_seconds))
        object.__setattr__(self, "wall_time", type(self.calendar) is AlwaysOpen)


def resolve_policies(
    specs: Sequence[PolicySpec], calendars: Mapping[str, Calendar]
) -> tuple[Policy, ...]:
    """Attach calendars to policy specs; :class:`ConfigError` if a calendar is missing."""
    resolved = []
    for spec in specs:
        calendar = calendars.get(spec.calendar)
        if calendar is None:
            raise ConfigError(
                f"sla_policies.{spec.name}.calendar {spec.calendar!r} is not a configured calendar"
            )
        resolved.append(Policy(spec=spec, calendar=calendar))
    return tuple(resolved)


def policies_for(policies: Sequence[Policy], channel: str, topic: str | None) -> list[Policy]:
    """The policies that apply to a contact, in configuration order.

    Per metric, the policies for exactly this topic win over the generic ones
    (``spec.topic is None``); a policy for another topic never applies.
    """
    on_channel = [p for p in policies if p.spec.channel == channel]
    specific_metrics = {
        p.spec.metric for p in on_channel if topic is not None and p.spec.topic == topic
    }
    chosen = []
    for policy in on_channel:
        if policy.spec.topic is None:
            if policy.spec.metric not in specific_metrics:
                chosen.append(policy)
        elif policy.spec.topic == topic:
            chosen.append(policy)
    return chosen


@dataclass(frozen=True, slots=True)
class PolicySelection:
    """The policies one (channel, topic) gets, split by metric."""

    first: tuple[Policy, ...]
    next: tuple[Policy, ...]
    # A bot reply is the first reply only when every first-reply target accepts a
    # bot; with no target at all a human reply counts (the PolicySpec default).
    first_needs_human: bool


# observe() runs per event and contacts are opened per contact, so the choice is
# cached per policy set (by identity; the entry keeps the set alive, so an id is
# never reused while its entry exists).
_SELECTIONS: dict[tuple[int, str, str | None], tuple[Sequence[Policy], PolicySelection]] = {}
_MAX_SELECTIONS: Final = 4096


def selection_for(policies: Sequence[Policy], channel: str, topic: str | None) -> PolicySelection:
    key = (id(policies), channel, topic)
    cached = _SELECTIONS.get(key)
    if cached is not None and cached[0] is policies:
        return cached[1]
    chosen = policies_for(policies, channel, topic)
    first = tuple(p for p in chosen if p.spec.metric == FIRST_REPLY)
    selection = PolicySelection(
        first=first,
        next=tuple(p for p in chosen if p.spec.metric == NEXT_REPLY),
        first_needs_human=not first or any(p.spec.human_only for p in first),
    )
    if len(_SELECTIONS) >= _MAX_SELECTIONS:
        _SELECTIONS.clear()  # topics are open-ended; bound the memory
    _SELECTIONS[key] = (policies, selection)
    return selection
