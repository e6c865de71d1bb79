"""The pure parts of ``cxstream bench runtime`` and of the hot path it measures.

The commit order is checked against in-memory doubles of the producer and the
group's positions (the real ones run in tests/integration/test_runtime_options.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.bench_peers import KSTREAMS_EOS, EngineResult
from pipeline.bench_runtime import (
    FAUST_WORKER,
    HOTPATH_ALOS,
    HOTPATH_EOS,
    Timing,
    ratio_vs_kstreams_eos,
    summary_line,
)
from pipeline.hotpath.batch import next_offsets, raw_records
from pipeline.hotpath.changelog import fold
from pipeline.hotpath.checkpoint import Checkpoint, commit
from pipeline.hotpath.config import AT_LEAST_ONCE, EXACTLY_ONCE, HotPathConfig
from pipeline.streaming import Outgoing, RawRecord


class RecordingKafka:
    """Outputs and Positions in one: notes every call in order, acks on demand."""

    def __init__(self, *, fail_on_topic: str | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on_topic = fail_on_topic

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        self.calls.append(("send", topic, key, partition))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if topic == self.fail_on_topic:
            future.set_exception(RuntimeError(f"{topic} refused"))
        else:
            future.set_result(None)
        return future

    async def begin_transaction(self) -> None:
        self.calls.append(("begin",))

    async def commit_transaction(self, offsets: Mapping[int, int]) -> None:
        self.calls.append(("commit_transaction", dict(offsets)))

    async def abort_transaction(self) -> None:
        self.calls.append(("abort",))

    async def commit(self, offsets: Mapping[int, int]) -> None:
        self.calls.append(("commit_offsets", dict(offsets)))


CHECKPOINT = Checkpoint(
    outgoing=[Outgoing("p.sessions", b"c-1", b"s"), Outgoing("p.dlq", b"k", b"d")],
    state={2: {"c-1": b"state", "c-9": None, "__clock__:2": b"pos"}},
    offsets={2: 41},
)


def _commit(kafka: RecordingKafka, guarantee: Any, checkpoint: Checkpoint = CHECKPOINT) -> None:
    asyncio.run(
        commit(
            checkpoint,
            outputs=kafka,
            positions=kafka,
            changelog_topic="p.changelog",
            guarantee=guarantee,
        )
    )


def test_at_least_once_sends_outputs_then_state_then_commits_offsets() -> None:
    kafka = RecordingKafka()

    _commit(kafka, AT_LEAST_ONCE)

    assert kafka.calls == [
        ("send", "p.sessions", b"c-1", None),
        ("send", "p.dlq", b"k", None),
        ("send", "p.changelog", b"c-1", 2),
        ("send", "p.changelog", b"c-9", 2),
        ("send", "p.changelog", b"__clock__:2", 2),
        ("commit_offsets", {2: 41}),
    ]


def test_at_least_once_writes_no_state_and_no_offsets_when_an_output_is_refused() -> None:
    kafka = RecordingKafka(fail_on_topic="p.dlq")

    with pytest.raises(RuntimeError, match=r"p\.dlq refused"):
        _commit(kafka, AT_LEAST_ONCE)

    assert [call[1] for call in kafka.calls] == ["p.sessions", "p.dlq"]


def test_exactly_once_writes_all_three_in_one_transaction() -> None:
    kafka = RecordingKafka()

    _commit(kafka, EXACTLY_ONCE)

    assert kafka.calls[0] == ("begin",)
    assert kafka.calls[-1] == ("commit_transaction", {2: 41})
    assert len(kafka.calls) == 7


def test_exactly_once_aborts_the_transaction_when_a_send_is_refused() -> None:
    kafka = RecordingKafka(fail_on_topic="p.changelog")

    with pytest.raises(RuntimeError, match=r"p\.changelog refused"):
        _commit(kafka, EXACTLY_ONCE)

    assert kafka.calls[-1] == ("abort",)
    assert ("commit_transaction", {2: 41}) not in kafka.calls


def test_an_empty_checkpoint_writes_nothing_not_even_a_transaction() -> None:
    kafka = RecordingKafka()

    _commit(kafka, EXACTLY_ONCE, Checkpoint())

    assert kafka.calls == []


def test_exactly_once_needs_a_transactional_id() -> None:
    with pytest.raises(ValueError, match="transactional_id"):
        HotPathConfig("in", "group", "changelog", guarantee=EXACTLY_ONCE)


@dataclass
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: Sequence[tuple[str, bytes]]


def test_a_getmany_batch_becomes_raw_records_and_resume_offsets_one_past_the_last() -> None:
    batch = {
        "tp0": [
            Consumed("in", 0, 7, b"a", b"1", 100, []),
            Consumed("in", 0, 8, b"b", b"2", 101, []),
        ],
        "tp3": [Consumed("in", 3, 40, None, b"3", 102, [("h", b"v")])],
    }

    records = raw_records(batch)

    assert records == [
        RawRecord("in", 0, 7, b"a", b"1", 100, ()),
        RawRecord("in", 0, 8, b"b", b"2", 101, ()),
        RawRecord("in", 3, 40, None, b"3", 102, (("h", b"v"),)),
    ]
    assert next_offsets(records) == {0: 9, 3: 41}


def test_a_changelog_folds_to_the_last_value_per_key_and_tombstones_delete() -> None:
    log = [
        (0, b"c-1", b"v1"),
        (0, b"c-2", b"x"),
        (1, b"c-3", b"y"),
        (0, b"c-1", b"v2"),
        (0, b"c-2", None),
    ]

    assert fold(log) == {0: {b"c-1": b"v2"}, 1: {b"c-3": b"y"}}


def _result(name: str, events_per_s: float) -> EngineResult:
    return EngineResult(
        name, events=100_006, seconds=100_006 / events_per_s, cpu_s=10.0, sessions_out=5
    )


def test_each_option_is_divided_by_kafka_streams_exactly_once_of_the_same_run() -> None:
    results = {
        KSTREAMS_EOS: _result(KSTREAMS_EOS, 10_000),
        FAUST_WORKER: _result(FAUST_WORKER, 5_000),
        HOTPATH_EOS: _result(HOTPATH_EOS, 8_500),
    }

    assert ratio_vs_kstreams_eos(results) == pytest.approx({FAUST_WORKER: 0.5, HOTPATH_EOS: 0.85})


def test_the_summary_says_which_options_emitted_the_workers_sessions() -> None:
    results = {
        KSTREAMS_EOS: _result(KSTREAMS_EOS, 10_000),
        FAUST_WORKER: _result(FAUST_WORKER, 5_000),
    }
    same = {("c-1", 1, 2)}
    sessions = {FAUST_WORKER: same, HOTPATH_ALOS: same, HOTPATH_EOS: {("c-1", 1, 3)}}

    line = summary_line(results, sessions)

    assert line == (
        "bench runtime ratio_faust_worker=0.50 "
        "same_sessions_hotpath_alos=yes same_sessions_hotpath_eos=no"
    )


def test_timing_reports_once_when_the_target_is_reached() -> None:
    reports: list[dict[str, float]] = []
    timing = Timing(2500, reports.append)

    for size in (1000, 1000, 1000, 1000):
        timing.add(size)

    assert len(reports) == 1
    assert reports[0]["events"] == 3000
    assert reports[0]["batches"] == 3
