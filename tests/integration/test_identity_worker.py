"""The worker with identity traffic counts what the replay counts (issue 16).

Simulator traffic with anonymous starts, identifications and unlinks
(``--identity-share``) goes through the real broker and real ``cxstream worker``
processes: identity events go to ``<prefix>.identity``, what identity gives a
customer comes back on ``<prefix>.interactions-rekeyed``, crossing partitions
through Kafka. Compared with ``replay_events`` of the same events:

- the link periods on ``<prefix>.identity-links``: equal, record for record (one
  identity partition sees its identifiers' events in the input's order, as the
  replay's identity stage does);
- every row that counts, as the SQL sink keeps it (tests/sink_kept.py: the sink's
  row rules for journeys, contacts and needs, else the last record): journeys, contacts, needs,
  SLA events, journey signals and late events, each field but ``version``, ids
  included: equal. Released events reach their customer a batch or two after the
  replay applies them, so journeys and needs are named after their earliest event
  and contact, not the first to arrive. Not compared: the rows that never count
  (journeys superseded, needs and SLA events retracted), whose existence depends
  on what the worker had sent when a released event arrived
  (``pipeline.replay.standing``; docs/architecture.md, "Worker and replay").

Also across a SIGKILL, and with two workers in one group.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.contract.codec import RecordCodec
from pipeline.control import send_end_of_input
from pipeline.dlq import (
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    parse_dead_letter_headers,
)
from pipeline.replay import ReplayResult, replay_events, standing
from pipeline.settings import Settings
from pipeline.tools.simulator import SimItem, SimulatorConfig, generate
from pipeline.topics import DLQ, IDENTITY, IDENTITY_LINKS, REKEYED
from tests.integration.worker_harness import (
    WorkerProcess,
    committed_offsets,
    end_offsets,
    free_port,
    input_end,
    input_topic,
    metric_value,
    normalise,
    process_group,
    read_outputs,
    read_topic,
    send_items,
    settings_with_topics,
    wait_for_members,
    write_config,
)
from tests.sink_kept import sink_kept

SIM = SimulatorConfig(customers=120, count=2500, seed=5, identity_share=0.3)


@pytest.fixture
def stream_config(kafka_bootstrap: str, unique_prefix: str, request: pytest.FixtureRequest) -> dict:
    guarantee = getattr(request, "param", "at_least_once")
    return {
        "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
        "worker": {
            "clock": "stream",
            "batch_size": 200,
            "session_update_seconds": 0.2,
            "guarantee": guarantee,
            "control_records": True,
        },
    }


@pytest.fixture
def settings(stream_config: dict) -> Settings:
    return settings_with_topics(stream_config)


@pytest.fixture
def worker_factory(tmp_path: Path, stream_config: dict):
    config_file = write_config(tmp_path / "cxstream.yaml", stream_config)
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(
            "worker", config_file, tmp_path / f"worker{len(started)}.log", free_port()
        ).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_until_settled(
    settings: Settings, workers: list[WorkerProcess], timeout: float = 240.0
) -> None:
    """Wait until the group committed every record of the input, identity and re-keyed
    topics, twice in a row with the same log ends: the identity processors' records
    were applied, and what they sent was too. Exactly once the worker writes the
    identity topics in transactions: a log then ends with a commit marker, one
    offset past its last record."""
    bootstrap = settings.kafka.bootstrap
    marker = 1 if settings.worker.guarantee == "exactly_once" else 0
    group = process_group(settings)
    topics = [input_topic(settings), settings.kafka.topic(IDENTITY), settings.kafka.topic(REKEYED)]
    deadline = time.monotonic() + timeout
    settled_ends: dict[str, dict[int, int]] | None = None
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for worker in workers:
            worker.assert_running()
        ends = {topic: end_offsets(bootstrap, topic) for topic in topics}
        committed = {topic: committed_offsets(bootstrap, group, topic) for topic in topics}
        state = {"ends": ends, "committed": committed}
        done = all(
            committed[topic].get(p, 0) >= end - (marker if topic != topics[0] else 0)
            for topic in topics
            for p, end in ends[topic].items()
        )
        if done and ends == settled_ends:
            return
        settled_ends = ends if done else None
        time.sleep(1.0)
    raise AssertionError(
        f"not settled within {timeout}s: {state}\n" + "\n".join(w.log_tail() for w in workers)
    )


def counted(outputs: dict[str, dict[str, dict]]) -> dict[str, Any]:
    """Every row that counts, without ``version`` (see the module docstring)."""
    return standing(outputs)


def difference(name: str, actual: Any, expected: Any, limit: int = 5) -> str:
    """The first few differences of one ``counted`` entry (streamed, replayed)."""
    if isinstance(expected, dict):
        keys = sorted(k for k in set(actual) | set(expected) if actual.get(k) != expected.get(k))
        lines = []
        for key in keys[:limit]:
            got, want = actual.get(key) or {}, expected.get(key) or {}
            fields = {f: (got.get(f), want.get(f)) for f in set(got) | set(want)}
            lines.append(f"{key}: { ({f: v for f, v in fields.items() if v[0] != v[1]}) }")
        return f"{name}: {len(keys)} differ\n" + "\n".join(lines)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    return f"{name}: missing {missing[:limit]} unexpected {extra[:limit]}"


def replayed(items: list[SimItem], settings: Settings) -> ReplayResult:
    return replay_events([item.event for item in items if item.event is not None], settings)


def link_records(settings: Settings) -> dict[str, dict]:
    codec = RecordCodec("identity_link")
    latest = {}
    for record in read_topic(settings.kafka.bootstrap, settings.kafka.topic(IDENTITY_LINKS)):
        decoded = codec.decode(record.value)
        latest[decoded["link_id"]] = decoded
    return latest


def eventually_caught_up(
    web_port: int, topic: str, settings: Settings, timeout_s: float = 10.0
) -> bool:
    """Whether ``cxstream_consumer_lag{topic}``, summed over the partitions, is shown
    and comes down to what is left once every record is applied, within the timeout
    (the gauge is set on the worker's tick): 0, or exactly once, at most the commit
    marker that ends each partition of a topic the worker writes in transactions
    (docs/ops.md, the lag row)."""
    markers = settings.kafka.input_partitions if settings.worker.guarantee == "exactly_once" else 0
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if metric_value(web_port, "cxstream_consumer_lag", topic=topic) <= markers:
                return True
        except AssertionError:  # not shown yet
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def assert_the_worker_counts_what_the_replay_counts(
    items: list[SimItem], settings: Settings
) -> None:
    replay = replayed(items, settings)
    assert replay.identity["links"] > 20 and replay.reattribution["events_unattributed"] > 0
    expected = counted(sink_kept(normalise(replay.records)))
    actual = counted(sink_kept(read_outputs(settings.kafka.bootstrap, settings)))
    for name in expected:
        assert actual[name] == expected[name], difference(name, actual[name], expected[name])
    assert len(expected["session"]) > 100 and len(expected["need"]) > 100
    # contacts.identified_at (the worker's equal the replay's, above) is set.
    assert sum(1 for c in expected["contact"].values() if c["identified_at"] is not None) > 20
    links = {link.link_id: link.to_dict() for link in replay.identity_links}
    assert link_records(settings) == links
    dead_letters = [
        parse_dead_letter_headers(r.headers)
        for r in read_topic(settings.kafka.bootstrap, settings.kafka.topic(DLQ))
    ]
    # Each malformed input record is dead-lettered: once, or at least once after a
    # SIGKILL at least once (the batch after the last commit is read again).
    sources = {(h[SOURCE_TOPIC], h[SOURCE_PARTITION], h[SOURCE_OFFSET]) for h in dead_letters}
    assert len(sources) == sum(1 for item in items if item.is_malformed)
    if settings.worker.guarantee == "exactly_once":
        assert len(dead_letters) == len(sources)
    assert {h["cx.dlq.stage"] for h in dead_letters} <= {"decode", "validate"}


@pytest.mark.parametrize(
    "stream_config",
    ["at_least_once", "exactly_once"],
    ids=["at-least-once", "exactly-once"],
    indirect=True,
)
def test_a_worker_with_identity_traffic_counts_what_the_replay_counts(
    settings: Settings, worker_factory
) -> None:
    items = list(generate(SIM))
    worker = worker_factory()
    send_items(items, settings)
    send_end_of_input(settings.kafka, input_topic(settings), input_end_ms=input_end(items))
    wait_until_settled(settings, [worker])

    assert_the_worker_counts_what_the_replay_counts(items, settings)
    # The identity metrics are fed (docs/ops.md, "Identity").
    assert metric_value(worker.web_port, "cxstream_identity_linked_total") > 20
    assert metric_value(worker.web_port, "cxstream_identity_reattributed_total") > 0
    assert metric_value(worker.web_port, "cxstream_identity_customers_rebuilt_total") > 0
    # The lag gauge covers the identity and re-keyed topics too, all consumed.
    for name in (IDENTITY, REKEYED):
        assert eventually_caught_up(worker.web_port, settings.kafka.topic(name), settings)


def test_a_worker_with_identity_traffic_killed_mid_stream_and_restarted_counts_the_same(
    settings: Settings, worker_factory
) -> None:
    items = list(generate(SIM))
    first, second = items[: len(items) // 2], items[len(items) // 2 :]
    worker = worker_factory()
    send_items(first, settings)
    wait_until_settled(settings, [worker])
    send_items(second, settings)
    time.sleep(0.5)  # part-way into the second half, identity records in flight
    worker.kill()

    restarted = worker_factory()
    send_end_of_input(settings.kafka, input_topic(settings), input_end_ms=input_end(items))
    wait_until_settled(settings, [restarted])

    assert_the_worker_counts_what_the_replay_counts(items, settings)


def test_two_workers_with_identity_traffic_count_what_the_replay_counts(
    settings: Settings, worker_factory
) -> None:
    """Re-keyed records cross from one worker's identity partitions to the other's
    customers, through Kafka."""
    items = list(generate(SIM))
    workers = [worker_factory(), worker_factory()]
    wait_for_members(settings.kafka.bootstrap, process_group(settings), 2, workers[0])
    send_items(items, settings)
    send_end_of_input(settings.kafka, input_topic(settings), input_end_ms=input_end(items))
    wait_until_settled(settings, workers)

    assert_the_worker_counts_what_the_replay_counts(items, settings)
