"""The worker's state changelog without a Faust table (pipeline/runtime/changelog.py)."""

from __future__ import annotations

from pipeline.runtime.changelog import (
    fold,
    process_group,
    state_changelog_spec,
    state_changelog_topic,
)
from pipeline.settings import KafkaSettings


def test_the_changelog_keeps_the_name_faust_gave_the_table_so_existing_state_is_read() -> None:
    kafka = KafkaSettings(topic_prefix="bank")

    assert process_group(kafka) == "cxstream-bank-process"
    assert state_changelog_topic(kafka) == "cxstream-bank-process-customer-state-changelog"


def test_the_changelog_is_compacted_kept_forever_and_partitioned_like_the_input() -> None:
    spec = state_changelog_spec(KafkaSettings(input_partitions=12, replication_factor=3))

    assert (spec.partitions, spec.replication_factor) == (12, 3)
    assert spec.configs() == {"retention.ms": "-1", "cleanup.policy": "compact"}


def test_the_state_is_the_last_value_of_each_key_and_a_tombstone_removes_it() -> None:
    records: list[tuple[int, bytes | None, bytes | None]] = [
        (0, b"c1", b"v1"),
        (0, b"c2", b"v1"),
        (1, b"c1", b"other partition"),
        (0, b"c1", b"v2"),
        (0, b"c2", None),
        (0, None, b"ignored"),
        (0, b"c3", b"v1"),
    ]

    assert fold(records) == {0: {b"c1": b"v2", b"c3": b"v1"}, 1: {b"c1": b"other partition"}}
