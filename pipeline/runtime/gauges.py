"""The worker's gauges, set from the stream core's per-partition readings on each tick."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from pipeline.metrics import Metrics
from pipeline.settings import Settings
from pipeline.streaming import PartitionGauge


def tightest_targets(settings: Settings) -> dict[str, float]:
    """channel -> the smallest SLA target of its policies, in seconds.

    The oldest unanswered item of a channel is compared with it.
    """
    targets: dict[str, float] = {}
    for policy in settings.policies:
        current = targets.get(policy.channel)
        if current is None or policy.target_seconds < current:
            targets[policy.channel] = policy.target_seconds
    return targets


def update_gauges(
    metrics: Metrics,
    settings: Settings,
    gauges: Mapping[int, PartitionGauge],
    *,
    input_topic: str,
    applied_offsets: Mapping[int, int],
    log_end: Callable[[int], int | None],
    targets: Mapping[str, float],
    side_positions: Iterable[tuple[str, int, int | None, int | None]] = (),
) -> None:
    """Open sessions, waiting contacts, oldest unanswered age, lag and stream time.

    ``side_positions``: ``(topic, partition, last applied offset or None, log end or
    None)`` of the other topics the worker consumes (identity, re-keyed; issue 16),
    whose lag is shown beside the input's.
    """
    metrics.set_open_sessions(sum(g.open_sessions for g in gauges.values()))
    # Ages are measured on each partition's clock (event time), so a replay or
    # a time-lapse simulation shows the same ages as live traffic.
    oldest_age: dict[str, float] = {}
    waiting: dict[str, int] = {}
    for gauge in gauges.values():
        for channel, count in gauge.waiting_contacts.items():
            waiting[channel] = waiting.get(channel, 0) + count
        if gauge.clock_ms is None:
            continue
        for channel, started in gauge.oldest_open_sla_clock.items():
            age = max(0.0, (gauge.clock_ms - started) / 1000)
            oldest_age[channel] = max(age, oldest_age.get(channel, 0.0))
    for channel in settings.channels.keys:
        age = oldest_age.get(channel, 0.0)
        target = targets.get(channel)
        metrics.set_oldest_unanswered(channel, age, age / target if target else 0.0)
        metrics.set_waiting_contacts(channel, waiting.get(channel, 0))
    for partition, gauge in gauges.items():
        end = log_end(partition)
        if end is not None:
            metrics.set_lag(input_topic, partition, _lag(end, applied_offsets.get(partition)))
        if gauge.clock_ms is not None:
            metrics.set_stream_time(partition, gauge.clock_ms / 1000)
    for topic, partition, applied, end in side_positions:
        if end is not None:
            metrics.set_lag(topic, partition, _lag(end, applied))


def _lag(end: int, applied: int | None) -> int:
    """Records after the last applied one (None: none applied yet) up to ``end``."""
    return max(0, end - (applied + 1 if applied is not None else 0))
