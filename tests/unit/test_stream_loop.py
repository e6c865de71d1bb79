"""The loop's choice of which fetched records it may apply (pipeline/runtime/loop.py).

A batch can be fetched before a rebalance and applied after it. The consumer is
replaced by a recorder of seeks; the restart tests on a real broker
(test_stream_matches_replay, test_worker_guarantees, test_failover) cover the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.runtime.config import LoopConfig
from pipeline.runtime.loop import StreamLoop
from pipeline.settings_loader import build_settings


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Record:
    offset: int
    topic: str = "cx.interactions"
    partition: int = 0
    key: bytes | None = b"c1"
    value: bytes | None = b"v"
    timestamp: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class SeekRecorder:
    seeks: list[tuple[Any, int]] = field(default_factory=list)

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


def loop_with(loaded: dict[int, int | None]) -> tuple[StreamLoop, SeekRecorder]:
    """A loop whose partitions are loaded at the given applied offsets (None: no position)."""
    settings = build_settings({})
    loop = StreamLoop(settings, LoopConfig("cx.interactions", "g", "cx-state"))
    for partition, applied in loaded.items():
        loop.handler.load_partition(partition, [])
        if applied is not None:
            loop.handler.applied_offsets[partition] = applied
        loop.loaded.add(partition)
    recorder = SeekRecorder()
    loop._consumer = recorder  # the loop's own attribute: its consumer, set by start()
    return loop, recorder


def test_records_that_follow_the_states_position_are_applied() -> None:
    loop, recorder = loop_with({0: 9})
    tp = TP("cx.interactions", 0)

    applicable = loop._applicable({tp: [Record(10), Record(11)]})

    assert [r.offset for r in applicable[tp]] == [10, 11]
    assert recorder.seeks == []


def test_a_batch_fetched_past_the_states_position_is_dropped_and_the_partition_read_again() -> None:
    loop, recorder = loop_with({0: 9, 1: None})
    behind, fresh = TP("cx.interactions", 0), TP("cx.interactions", 1)

    applicable = loop._applicable({behind: [Record(40), Record(41)], fresh: [Record(7)]})

    assert behind not in applicable
    assert recorder.seeks == [(behind, 10)]
    # A partition with no stored position starts wherever the group says.
    assert [r.offset for r in applicable[fresh]] == [7]


def test_records_of_a_partition_this_worker_does_not_hold_are_left_to_its_owner() -> None:
    loop, recorder = loop_with({0: 9})
    moved = TP("cx.interactions", 3)

    assert loop._applicable({moved: [Record(5)]}) == {}
    assert recorder.seeks == []


def test_exactly_once_the_gaps_of_transaction_markers_in_the_identity_topics_are_no_holes() -> None:
    """The worker writes identity and re-keyed records in transactions: a commit
    marker takes an offset, so the next record is never at applied + 1."""
    settings = build_settings({"worker": {"guarantee": "exactly_once"}})
    config = LoopConfig(
        "cx.interactions",
        "g",
        "cx-state",
        guarantee="exactly_once",
        transactional_id="t",
        identity_topic="cx.identity",
        rekeyed_topic="cx.interactions-rekeyed",
        identity_changelog_topic="cx-identity-state",
    )
    loop = StreamLoop(settings, config)
    loop.handler.load_partition(0, [])
    loop.handler.applied_rekeyed[0] = 4
    loop.loaded.add(0)
    loop.identity.load_partition(0, [])
    loop.identity.applied_offsets[0] = 9
    recorder = SeekRecorder()
    loop._consumer = recorder  # the loop's own attribute: its consumer, set by start()
    rekeyed, identity = TP("cx.interactions-rekeyed", 0), TP("cx.identity", 0)

    applicable = loop._applicable(
        {
            rekeyed: [Record(6, topic="cx.interactions-rekeyed")],
            identity: [Record(11, topic="cx.identity")],
        }
    )

    assert [r.offset for r in applicable[rekeyed]] == [6]
    assert [r.offset for r in applicable[identity]] == [11]
    assert recorder.seeks == []
