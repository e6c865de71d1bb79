"""One consumed batch: its records as the handlers take them, and its positions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from pipeline.streaming import RawRecord


class ConsumedRecord(Protocol):
    """The fields of an aiokafka ``ConsumerRecord`` the runtime reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: Sequence[tuple[str, bytes]]


def raw_records(batch: Mapping[Any, Sequence[ConsumedRecord]]) -> list[RawRecord]:
    """The records of one ``getmany`` result, partition by partition, in offset order."""
    records: list[RawRecord] = []
    append = records.append
    for consumed in batch.values():
        for record in consumed:
            append(
                RawRecord(
                    record.topic,
                    record.partition,
                    record.offset,
                    record.key,
                    record.value,
                    record.timestamp,
                    tuple(record.headers),
                )
            )
    return records


def next_offsets_by_topic(records: Iterable[RawRecord]) -> dict[str, dict[int, int]]:
    """Topic -> partition -> the offset to resume from (a batch of several topics)."""
    offsets: dict[str, dict[int, int]] = {}
    for record in records:
        topic = offsets.setdefault(record.topic, {})
        if record.offset + 1 > topic.get(record.partition, -1):
            topic[record.partition] = record.offset + 1
    return offsets
