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
from dataclasses import dataclass
from typing import Any

from pipeline.kafka_clients import kafka_python_options
from pipeline.settings import KafkaSettings
from pipeline.topics import INTERACTIONS

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class FleetFigures:
    consumer_lag: int | None  # records in the input topic past the group's commits
    workers: int | None  # members of the process group


def process_group(kafka: KafkaSettings) -> str:
    """The worker group's id (``agents/app.py`` names it the same way)."""
    return f"cxstream-{kafka.topic_prefix}-process"


def lag_from_offsets(ends: dict[int, int], committed: dict[int, int]) -> int:
    """Sum over partitions of end minus committed (a partition never committed: all of it)."""
    return sum(max(0, end - committed.get(partition, 0)) for partition, end in ends.items())


def _read(kafka: KafkaSettings) -> FleetFigures:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    options: dict[str, Any] = kafka_python_options(kafka)
    group = process_group(kafka)
    topic = kafka.topic(INTERACTIONS)
    admin = KafkaAdminClient(**options)
    try:
        offsets = admin.list_group_offsets(group).get(group) or {}
        committed = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
        described = admin.describe_groups([group]).get(group) or {}
        workers = len(described.get("members") or [])
    finally:
        admin.close()
    consumer = KafkaConsumer(**options)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = {tp.partition: end for tp, end in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()
    return FleetFigures(lag_from_offsets(ends, committed), workers)


_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="wall-kafka")


def fleet_figures(kafka: KafkaSettings, timeout: float = TIMEOUT_SECONDS) -> FleetFigures:
    """Lag and worker count, or ``None`` figures when the broker does not answer in time."""
    future = _pool.submit(_read, kafka)
    try:
        return future.result(timeout=timeout)
    except Exception as exc:  # any broker failure: the page says "unknown"
        log.warning("wall: Kafka figures unavailable: %s", exc)
        return FleetFigures(None, None)
