"""The identity continuity metrics (issue 16; docs/ops.md, "Identity").

Created by :class:`pipeline.metrics.Metrics` against its registry (so the naming
and label checks of tests/unit/test_metrics.py cover them) and fed by whoever
runs the identity processor: the worker (:mod:`pipeline.identity_streaming`
after every batch and tick), from
:meth:`pipeline.core.identity.IdentityProcessor.take_measures` and
:meth:`~pipeline.core.identity.IdentityProcessor.held_now`, and the customers'
processors' ``reattribution`` counters (:mod:`pipeline.streaming`). Labels are
channels only (bounded like every channel label); an identifier, its kind's value
or a customer never appears.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.core.identity import IdentityMeasures

# Most identifications come within minutes (the IVR, a login); the hold ends at 15
# minutes by default, and a late identification can come hours later.
IDENTIFICATION_DELAY_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 4 * 3600, 86400)


class IdentityMetrics:
    """Held events, links, expiries, re-attributions and identification delays."""

    def __init__(self, registry: CollectorRegistry, channel: Callable[[str], str]) -> None:
        #: Maps a channel to its bounded label (``other`` outside the registry).
        self._label = channel
        self.held = Gauge(
            "cxstream_identity_held",
            "Events held because their identifier has no customer yet, over this "
            "worker's identity partitions.",
            registry=registry,
        )
        self.linked = Counter(
            "cxstream_identity_linked_total",
            "identified events that linked an identifier to a customer (or moved it).",
            ("channel",),
            registry=registry,
        )
        self.expired = Counter(
            "cxstream_identity_expired_total",
            "Events released as an anonymous customer: no identification within "
            "identity.hold or identity.max_held.",
            ("channel",),
            registry=registry,
        )
        self.reattributed = Counter(
            "cxstream_identity_reattributed_total",
            "Events taken back from a customer (unlinked, or the identifier moved).",
            registry=registry,
        )
        self.journeys_rebuilt = Counter(
            "cxstream_identity_customers_rebuilt_total",
            "Customers rebuilt without events identity took back, their rows corrected.",
            registry=registry,
        )
        self.identification_delay = Histogram(
            "cxstream_identification_delay_seconds",
            "Event-time seconds from an identifier's first held event to its identification.",
            ("channel",),
            buckets=IDENTIFICATION_DELAY_BUCKETS,
            registry=registry,
        )

    def observe(self, measures: IdentityMeasures, held_now: int) -> None:
        """What the identity processors measured since the last call, and the held gauge."""
        label = self._label
        for channel, count in measures.linked.items():
            self.linked.labels(label(channel)).inc(count)
        for channel, count in measures.expired.items():
            self.expired.labels(label(channel)).inc(count)
        for channel, seconds in measures.delays:
            self.identification_delay.labels(label(channel)).observe(seconds)
        if measures.reattributed:
            self.reattributed.inc(measures.reattributed)
        self.held.set(held_now)

    def customers_rebuilt(self, count: int) -> None:
        """Customers the customers' processors rebuilt (their ``reattributions`` counter)."""
        if count:
            self.journeys_rebuilt.inc(count)
