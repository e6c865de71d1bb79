"""The worker's per-customer state on Kafka: a compacted changelog topic, read by the worker itself.

Why not a Faust table: the worker used one only as a place to keep bytes that
its stream core writes to the changelog itself, and Faust's table recovery, the
step between an assignment and the first record, is where a takeover hung: in
about one failover run in five the recovery waited for changelog records it
never received, for 30 s to minutes (CI saw a survivor hold the dead worker's
partitions and apply nothing for 60 s; faust-streaming#74, #155, #176 and #651
are the same family). Without a table, Faust has nothing to recover, and a
partition's state is read when the partition is loaded, straight from the
broker, by the worker's own group-less consumer (``agents/refetch.py``).

The topic keeps the name Faust gave the table's changelog, so a deployment's
existing state is read as before: ``<app id>-customer-state-changelog``, the app
id being ``cxstream-<topic prefix>-process``.
"""

from __future__ import annotations

from pipeline.settings import KafkaSettings
from pipeline.topics import TopicSpec

STATE_TABLE = "customer-state"


def process_app_id(kafka: KafkaSettings) -> str:
    """The stream core's Faust app id, which is also its consumer group."""
    return f"cxstream-{kafka.topic_prefix}-process"


def state_changelog_topic(kafka: KafkaSettings) -> str:
    """The compacted topic that holds each customer's state and each partition's position."""
    return f"{process_app_id(kafka)}-{STATE_TABLE}-changelog"


def state_changelog_spec(kafka: KafkaSettings) -> TopicSpec:
    """One partition per input partition (state partition p belongs to input partition p),
    compacted and never deleted by age: the latest value of every key is the state."""
    return TopicSpec(
        partitions=kafka.input_partitions,
        retention_ms=-1,
        cleanup_policy="compact",
        replication_factor=kafka.replication_factor,
    )


def latest_values(records: list[tuple[bytes | None, bytes | None]]) -> dict[bytes, bytes]:
    """The state a changelog partition holds: the last value of each key; a tombstone
    (``None``) removes it. ``records`` are in offset order; keyless records are ignored."""
    state: dict[bytes, bytes] = {}
    for key, value in records:
        if key is None:
            continue
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state
