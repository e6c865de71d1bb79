"""The identity processor's counters and per-channel figures (issue 16).

Apart from :mod:`pipeline.core.identity` to keep that module small; the names are
importable from there too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class IdentityStats:
    """Counters of one identity processor (metrics, once wired)."""

    events: int = 0
    duplicates: int = 0
    #: Events put on hold (again, too, after an unlink took their customer).
    held: int = 0
    #: Releases to a customer (re-attributions included).
    released: int = 0
    #: Releases as the anonymous customer: the hold passed, max_held was
    #: exceeded, or the input ended.
    expired_hold: int = 0
    expired_max_held: int = 0
    expired_at_end: int = 0
    #: ``identified`` events that changed the link history.
    links: int = 0
    unlinks: int = 0
    #: ``unlinked`` events naming a customer the identifier had no link to then.
    unlinks_unmatched: int = 0
    #: Unattribute records (events taken back from a customer or the anonymous one).
    unattributed: int = 0
    identifiers_evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}


@dataclass
class IdentityMeasures:
    """Per-channel figures since the last :meth:`IdentityProcessor.take_measures`
    (the metrics of docs/ops.md, "Identity"): channels only, never an identifier."""

    #: ``identified`` events that changed the links, by the identified event's channel.
    linked: dict[str, int] = field(default_factory=dict)
    #: Events released as the anonymous customer, by their channel.
    expired: dict[str, int] = field(default_factory=dict)
    #: (channel, seconds) from an identifier's first held event to its identification.
    delays: list[tuple[str, float]] = field(default_factory=list)
    #: Unattribute records sent (events taken back from a customer).
    reattributed: int = 0
