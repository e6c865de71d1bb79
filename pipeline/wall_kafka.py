"""The wall's fleet-wide live figures from Kafka: consumer lag and worker count.

Read with kafka-python's admin client and a group-less consumer, the way an
operator's ``kafka-consumer-groups --describe`` would: the process group's
committed offsets against the input topic's end offsets, and the group's members.
Nothing here touches the workers' own send or commit path. Any broker trouble
gives ``None`` figures ("unknown" on the page), never an exception.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import Any

from pipeline.contract.event import iso_to_ms
from pipeline.dlq import ERROR_CLASS, STAGE, TIME, parse_dead_letter_headers
from pipeline.kafka_clients import kafka_python_options
from pipeline.settings import KafkaSettings
from pipeline.topics import DLQ, INTERACTIONS

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
#: The wall reads at most this many of the newest dead letters, so the rate it
#: shows caps here (a flood above it reads as "at least" this).
DEAD_LETTER_SCAN = 1000


@dataclass(frozen=True, slots=True)
class FleetFigures:
    consumer_lag: int | None  # records in the input topic past the group's commits
    workers: int | None  # members of the process group
    dead_letters_per_minute: int | None = None  # dead letters stamped in the last 60 s
    top_reason: str | None = None  # their most common "stage: error class"


def process_group(kafka: KafkaSettings) -> str:
    """The worker group's id (``agents/app.py`` names it the same way)."""
    return f"cxstream-{kafka.topic_prefix}-process"


def lag_from_offsets(ends: dict[int, int], committed: dict[int, int]) -> int:
    """Sum over partitions of end minus committed (a partition never committed: all of it)."""
    return sum(max(0, end - committed.get(partition, 0)) for partition, end in ends.items())


def dead_letter_rate(
    headers: list[list[tuple[str, bytes | None]]], now_ms: int
) -> tuple[int, str | None]:
    """Dead letters stamped (header ``cx.dlq.time``) in the 60 s before ``now_ms``,
    and their most common reason ``stage: error class`` (ties: alphabetical)."""
    reasons: dict[str, int] = {}
    for record_headers in headers:
        parsed = parse_dead_letter_headers(record_headers)
        try:
            stamped = iso_to_ms(parsed.get(TIME, ""))
        except Exception:  # no or a malformed stamp: not counted in a rate
            continue
        if now_ms - 60_000 <= stamped <= now_ms:
            reason = f"{parsed.get(STAGE, '?')}: {parsed.get(ERROR_CLASS, '?')}"
            reasons[reason] = reasons.get(reason, 0) + 1
    if not reasons:
        return 0, None
    top = min(reasons, key=lambda r: (-reasons[r], r))
    return sum(reasons.values()), top


def _read(kafka: KafkaSettings) -> FleetFigures:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    group = process_group(kafka)
    topic = kafka.topic(INTERACTIONS)
    admin = KafkaAdminClient(**kafka_python_options(kafka))
    try:
        offsets = admin.list_group_offsets(group).get(group) or {}
        committed = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
        described = admin.describe_groups([group]).get(group) or {}
        workers = len(described.get("members") or [])
    finally:
        admin.close()
    consumer = KafkaConsumer(**kafka_python_options(kafka))
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = {tp.partition: end for tp, end in consumer.end_offsets(partitions).items()}
        now_ms = int(time.time() * 1000)
        letters = _newest_headers(consumer, kafka.topic(DLQ))
    finally:
        consumer.close()
    rate, reason = dead_letter_rate(letters, now_ms)
    return FleetFigures(lag_from_offsets(ends, committed), workers, rate, reason)


def _newest_headers(consumer: Any, topic: str) -> list[list[tuple[str, bytes | None]]]:
    """Headers of the newest ``DEAD_LETTER_SCAN`` records of each partition of ``topic``."""
    from kafka import TopicPartition

    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    if not partitions:
        return []
    ends = consumer.end_offsets(partitions)
    starts = consumer.beginning_offsets(partitions)
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, max(starts[tp], ends[tp] - DEAD_LETTER_SCAN))
    headers: list[list[tuple[str, bytes | None]]] = []
    deadline = time.monotonic() + TIMEOUT_SECONDS / 2
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        if time.monotonic() > deadline:
            break
        for records in consumer.poll(timeout_ms=200).values():
            headers.extend(list(record.headers or []) for record in records)
    return headers


_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="wall-kafka")


#: Every open wall polls every few seconds; one reading serves them all this long.
CACHE_SECONDS = 2.0
_cache: dict[KafkaSettings, tuple[float, FleetFigures]] = {}


def fleet_figures(kafka: KafkaSettings, timeout: float = TIMEOUT_SECONDS) -> FleetFigures:
    """Lag, workers and dead letters, or ``None`` figures when the broker does not
    answer in time; a reading younger than ``CACHE_SECONDS`` is reused."""
    cached = _cache.get(kafka)
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    future = _pool.submit(_read, kafka)
    try:
        figures = future.result(timeout=timeout)
    except Exception as exc:  # any broker failure: the page says "unknown"
        log.warning("wall: Kafka figures unavailable: %s", exc)
        return FleetFigures(None, None)
    _cache[kafka] = (time.monotonic(), figures)
    return figures
