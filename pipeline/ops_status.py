"""The live ops status: what the wall screen at ``/ops`` shows, built from metric samples.

Pure logic, no web server and no clock of its own: :func:`build_status` turns the
samples of the worker's ``CollectorRegistry`` (the very samples ``/metrics``
exposes, so the figures on the screen and in Prometheus agree exactly) into one
JSON-ready dict. :class:`CounterWindow` answers "how much did a counter grow in the
last hour" from snapshots the caller takes every few seconds, because a Prometheus
counter only knows its total since the process started.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

EVENTS_CONSUMED = "cxstream_events_consumed_total"
DEAD_LETTERS = "cxstream_dead_letters_total"
OPEN_SESSIONS = "cxstream_open_sessions"
CONSUMER_LAG = "cxstream_consumer_lag"
SLA_BREACHES = "cxstream_sla_breaches_total"
SLA_WARNINGS = "cxstream_sla_warnings_total"
SLA_RETRACTIONS = "cxstream_sla_retractions_total"
OLDEST_UNANSWERED = "cxstream_oldest_unanswered_seconds"
OLDEST_UNANSWERED_RATIO = "cxstream_sla_oldest_unanswered_deadline_ratio"
SWITCH_FAILURES = "cxstream_channel_switch_failures_total"
WORKER_INFO = "cxstream_worker_info"

HOUR_SECONDS = 3600.0

# Card states, worst last; the page colours a card by its state.
NO_TARGET = "no_target"  # no SLA policy on the channel: nothing can breach
OK = "ok"
WARNING = "warning"  # the oldest unanswered item passed the warning share
BREACH = "breach"  # the oldest unanswered item passed its target


class SampleLike(Protocol):
    name: str
    labels: dict[str, str]
    value: float


class FamilyLike(Protocol):
    """What ``CollectorRegistry.collect()`` yields: a metric family with samples."""

    samples: list[Any]


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A configured channel as the page shows it.

    ``warning_ratio``: the share of its target at which the oldest unanswered item
    turns the card amber (the channel's smallest policy ``warning_share``); None when
    no SLA policy covers the channel.
    """

    key: str
    display_name: str
    warning_ratio: float | None


def flatten(families: Iterable[FamilyLike]) -> list[SampleLike]:
    """Every sample of every family, in registry order."""
    return [sample for family in families for sample in family.samples]


def totals_by_label(samples: Iterable[SampleLike], name: str, label: str) -> dict[str, float]:
    """Sum of the samples called ``name``, grouped by the value of ``label``."""
    totals: dict[str, float] = {}
    for sample in samples:
        if sample.name == name:
            key = sample.labels.get(label, "")
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def net_of_retractions(samples: list[SampleLike], name: str, kind: str) -> dict[str, float]:
    """Per channel, the gross counter ``name`` less the retractions of ``kind``
    (a warning or breach taken back counts in both: docs/sql.md, "Retraction")."""
    totals = totals_by_label(samples, name, "channel")
    for sample in samples:
        if sample.name == SLA_RETRACTIONS and sample.labels.get("kind") == kind:
            key = sample.labels.get("channel", "")
            totals[key] = totals.get(key, 0.0) - sample.value
    return totals


def total(samples: Iterable[SampleLike], name: str) -> float:
    """Sum of every sample called ``name`` (0 when there is none)."""
    return sum(sample.value for sample in samples if sample.name == name)


def switch_failure_totals(samples: Iterable[SampleLike]) -> dict[str, float]:
    """Channel-switch failures since start by the channel the customer left.

    The failing channel is ``from_channel``: that is the team the failure is
    reported to (the same routing as the ``ChannelSwitchFailureSpike`` alert).
    """
    return totals_by_label(samples, SWITCH_FAILURES, "from_channel")


class CounterWindow:
    """Increase of per-key counter totals over a trailing window of real time.

    The caller takes a snapshot every few seconds with :meth:`record` (times from a
    monotonic clock) and asks :meth:`increase` with the current totals. The answer is
    exact to one snapshot interval: the baseline is the newest snapshot at least
    ``window_seconds`` old, or the first snapshot while the window reaches back
    further than that (take the first one with zero totals when the counters start,
    and the answer is then "since start"). Only the snapshots still needed are kept.
    """

    def __init__(self, window_seconds: float = HOUR_SECONDS, max_snapshots: int = 4096) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.window_seconds = window_seconds
        self._snapshots: deque[tuple[float, dict[str, float]]] = deque(maxlen=max_snapshots)

    def __len__(self) -> int:
        return len(self._snapshots)

    def record(self, at: float, totals: Mapping[str, float]) -> None:
        """Keep a snapshot of ``totals`` taken at ``at``; older ones no longer needed go."""
        if self._snapshots and at < self._snapshots[-1][0]:
            raise ValueError("snapshots must be recorded in time order")
        self._snapshots.append((at, dict(totals)))
        cutoff = at - self.window_seconds
        # Keep one snapshot at or before the cutoff: it is the baseline of the window.
        while len(self._snapshots) >= 2 and self._snapshots[1][0] <= cutoff:
            self._snapshots.popleft()

    def increase(self, now: float, totals: Mapping[str, float]) -> dict[str, float]:
        """``totals`` minus the baseline of the window ending at ``now``, per key.

        Keys present in ``totals`` only; a key missing from the baseline counts from
        zero (its labelled series did not exist yet). Never negative: a counter that
        went down was reset, and then its current total is what happened since.
        """
        cutoff = now - self.window_seconds
        baseline: Mapping[str, float] = self._snapshots[0][1] if self._snapshots else {}
        for at, snapshot in self._snapshots:
            if at > cutoff:
                break
            baseline = snapshot
        result = {}
        for key, value in totals.items():
            grown = value - baseline.get(key, 0.0)
            result[key] = grown if grown >= 0 else value
        return result


def channel_state(ratio: float, warning_ratio: float | None) -> str:
    """``breach`` at or past the target, ``warning`` past the warning share, else ``ok``."""
    if warning_ratio is None:
        return NO_TARGET
    if ratio >= 1.0:
        return BREACH
    if ratio >= warning_ratio:
        return WARNING
    return OK


def build_status(
    samples: Iterable[SampleLike],
    channels: Iterable[ChannelView],
    *,
    switch_failures_last_hour: Mapping[str, float],
    generated_at: float,
    started_at: float,
) -> dict[str, Any]:
    """The ``/ops/status.json`` document.

    ``samples``: the registry's samples (see :func:`flatten`). ``channels``: the
    configured channels in display order; a channel seen in the metrics but not
    configured (``other``) is appended so nothing the worker counts is hidden.
    ``switch_failures_last_hour``: from :class:`CounterWindow`, keyed by the channel
    the customer left. Times are unix seconds.

    Counter figures are totals since ``started_at`` (the values ``/metrics`` shows,
    summed over the labels the page does not split by); warnings and breaches net
    of their retractions.
    """
    samples = list(samples)
    breaches = net_of_retractions(samples, SLA_BREACHES, "breach")
    warnings = net_of_retractions(samples, SLA_WARNINGS, "warning")
    oldest = _max_by_label(samples, OLDEST_UNANSWERED, "channel")
    ratios = _max_by_label(samples, OLDEST_UNANSWERED_RATIO, "channel")
    switches = switch_failure_totals(samples)

    views = list(channels)
    known = {view.key for view in views}
    seen = set(breaches) | set(warnings) | set(oldest) | set(switches)
    views.extend(ChannelView(key, key, None) for key in sorted(seen - known))

    cards = []
    for view in views:
        ratio = ratios.get(view.key, 0.0)
        cards.append(
            {
                "channel": view.key,
                "display_name": view.display_name,
                "state": channel_state(ratio, view.warning_ratio),
                "sla_breaches": breaches.get(view.key, 0.0),
                "sla_warnings": warnings.get(view.key, 0.0),
                "oldest_unanswered_seconds": oldest.get(view.key, 0.0),
                "oldest_unanswered_ratio": ratio,
                "switch_failures_total": switches.get(view.key, 0.0),
                "switch_failures_last_hour": switch_failures_last_hour.get(view.key, 0.0),
            }
        )
    info = next((s.labels for s in samples if s.name == WORKER_INFO), {})
    return {
        "generated_at": generated_at,
        "started_at": started_at,
        "worker": {
            "version": info.get("version", ""),
            "config_hash": info.get("config_hash", ""),
        },
        "totals": {
            "events_consumed": total(samples, EVENTS_CONSUMED),
            "open_sessions": total(samples, OPEN_SESSIONS),
            "dead_letters": total(samples, DEAD_LETTERS),
            "consumer_lag": total(samples, CONSUMER_LAG),
        },
        "channels": cards,
    }


def _max_by_label(samples: Iterable[SampleLike], name: str, label: str) -> dict[str, float]:
    # A gauge has one series per channel in one worker; max keeps that true if a
    # future label (e.g. policy) splits it.
    result: dict[str, float] = {}
    for sample in samples:
        if sample.name == name:
            key = sample.labels.get(label, "")
            result[key] = max(sample.value, result.get(key, sample.value))
    return result
