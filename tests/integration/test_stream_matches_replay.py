"""The streaming path gives the same results as the offline replay.

Simulator traffic (with out-of-order, late, duplicate and malformed records)
goes through the real broker and the real ``cxstream worker`` process; its
output topics, reduced to the last record per natural key, must equal
``replay_events`` of the same events — also when the worker is SIGKILLed
mid-stream and restarted.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.control import send_end_of_input
from pipeline.dlq import parse_dead_letter_headers
from pipeline.replay import replay_events
from pipeline.settings import Settings
from pipeline.tools.simulator import DEFAULT_JOURNEY_WEIGHTS, SimItem, SimulatorConfig, generate
from pipeline.topics import DLQ, project_topics
from tests.integration.worker_harness import (
    WorkerProcess,
    commit_offsets,
    describe_difference,
    end_offsets,
    final_by_key,
    free_port,
    input_end,
    input_topic,
    normalise,
    process_group,
    read_outputs,
    read_topic,
    recreate_topic,
    send_items,
    settings_with_topics,
    wait_until_worker_consumed,
    write_config,
)

SIM = SimulatorConfig(customers=120, count=2500, seed=5)
# Needs over several days and needs bounced over 3 contacts and 2 channels (issue 15).
SIM_NEEDS = SimulatorConfig(
    customers=60,
    count=2500,
    seed=7,
    arrival_rate_per_hour=3.0,
    journey_weights={**DEFAULT_JOURNEY_WEIGHTS, "bounced_over_days": 0.15},
)


@pytest.fixture
def stream_config(kafka_bootstrap: str, unique_prefix: str, request: pytest.FixtureRequest) -> dict:
    # Parametrized indirectly with worker.guarantee; the default is at least once.
    guarantee = getattr(request, "param", "at_least_once")
    return {
        "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
        "worker": {
            "clock": "stream",
            "batch_size": 200,
            "session_update_seconds": 0.2,
            "guarantee": guarantee,
            # The tests end the input with end-of-input control records.
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


def _expected(items: list[SimItem], settings: Settings) -> dict:
    events = [item.event for item in items if item.event is not None]
    return final_by_key(normalise(replay_events(events, settings).records))


def _assert_outputs_equal_the_replay(items: list[SimItem], settings: Settings) -> None:
    actual = final_by_key(read_outputs(settings.kafka.bootstrap, settings))
    expected = _expected(items, settings)
    assert actual == expected, describe_difference(actual, expected)


def _first_half_consumed_by_a_stopped_worker(
    items: list[SimItem], settings: Settings, worker_factory
) -> list[SimItem]:
    """A worker consumes the first half of ``items`` and stops; returns the second half."""
    first, second = items[: len(items) // 2], items[len(items) // 2 :]
    worker = worker_factory()
    send_items(first, settings)
    wait_until_worker_consumed(settings, worker)
    worker.stop()
    return second


@pytest.mark.parametrize(
    "stream_config",
    ["at_least_once", "exactly_once"],
    ids=["at-least-once", "exactly-once"],
    indirect=True,
)
def test_worker_outputs_equal_the_offline_replay(settings: Settings, worker_factory) -> None:
    items = list(generate(SIM))
    malformed = sum(1 for item in items if item.is_malformed)
    worker = worker_factory()
    send_items(items, settings)
    send_end_of_input(settings.kafka, input_topic(settings), input_end_ms=input_end(items))
    wait_until_worker_consumed(settings, worker)

    actual = final_by_key(read_outputs(settings.kafka.bootstrap, settings))
    expected = _expected(items, settings)

    assert {name: len(rows) for name, rows in actual.items()} == {
        name: len(rows) for name, rows in expected.items()
    }
    assert actual == expected, describe_difference(actual, expected)
    assert len(expected["session"]) > 100
    assert len(expected["sla_event"]) > 0
    assert len(expected["journey_signal"]) > 0
    dead_letters = read_topic(settings.kafka.bootstrap, settings.kafka.topic(DLQ))
    assert malformed > 0
    assert len(dead_letters) == malformed
    reasons = {parse_dead_letter_headers(r.headers)["cx.dlq.stage"] for r in dead_letters}
    assert reasons <= {"decode", "validate"}


def test_worker_killed_mid_stream_and_restarted_gives_the_same_results(
    settings: Settings, worker_factory
) -> None:
    items = list(generate(SIM))
    first, second = items[: len(items) // 2], items[len(items) // 2 :]
    worker = worker_factory()
    send_items(first, settings)
    wait_until_worker_consumed(settings, worker)
    send_items(second, settings)
    time.sleep(0.5)  # let it get part-way into the second half
    worker.kill()

    restarted = worker_factory()
    send_end_of_input(settings.kafka, input_topic(settings), input_end_ms=input_end(items))
    wait_until_worker_consumed(settings, restarted)

    _assert_outputs_equal_the_replay(items, settings)


def test_needs_over_days_and_bounced_needs_equal_the_replay_across_a_sigkill(
    settings: Settings, worker_factory
) -> None:
    items = list(generate(SIM_NEEDS))
    first, second = items[: len(items) // 2], items[len(items) // 2 :]
    worker = worker_factory()
    send_items(first, settings)
    wait_until_worker_consumed(settings, worker)
    send_items(second, settings)
    time.sleep(0.5)  # let it get part-way into the second half
    worker.kill()

    restarted = worker_factory()
    send_end_of_input(settings.kafka, input_topic(settings), input_end_ms=input_end(items))
    wait_until_worker_consumed(settings, restarted)

    _assert_outputs_equal_the_replay(items, settings)
    needs = _expected(items, settings)["need"].values()
    day_ms = 86_400_000
    assert sum(1 for n in needs if n["last_contact_at"] - n["opened_at"] > 2 * day_ms) >= 5
    assert sum(1 for n in needs if n["bounced"]) >= 5
    bounces = _expected(items, settings)["journey_signal"].values()
    assert sum(1 for s in bounces if s["kind"] == "bounced") == sum(
        1 for n in needs if n["bounced"]
    )


@pytest.mark.parametrize(
    "hole", ["followed-by-a-later-record", "at-the-end-of-the-log"], ids=lambda hole: hole
)
def test_records_the_group_committed_but_the_worker_never_applied_are_still_applied(
    settings: Settings, worker_factory, hole: str
) -> None:
    # The group's committed offset moved past records the worker never applied
    # (an operator reset it, or a consumer booked skipped records as done, as
    # faust-streaming's fetcher did after a restart). The worker's stored
    # position must win over the committed offset, whether a later record
    # follows the hole or nothing does.
    items = list(generate(SIM))
    second = _first_half_consumed_by_a_stopped_worker(items, settings, worker_factory)
    send_items(second, settings)
    topic = input_topic(settings)
    commit_offsets(
        settings.kafka.bootstrap,
        process_group(settings),
        topic,
        end_offsets(settings.kafka.bootstrap, topic),
    )

    restarted = worker_factory()
    if hole == "at-the-end-of-the-log":
        # Nothing new arrives: the worker must read the hole all the same.
        wait_until_worker_consumed(settings, restarted)
    send_end_of_input(settings.kafka, topic, input_end_ms=input_end(items))
    wait_until_worker_consumed(settings, restarted)

    _assert_outputs_equal_the_replay(items, settings)


def test_a_recreated_input_topic_is_processed_although_its_offsets_start_again(
    settings: Settings, worker_factory
) -> None:
    items = list(generate(SIM))
    second = _first_half_consumed_by_a_stopped_worker(items, settings, worker_factory)
    topic = input_topic(settings)
    recreate_topic(settings.kafka.bootstrap, topic, project_topics(settings.kafka)[topic])
    send_items(second, settings)

    restarted = worker_factory()
    send_end_of_input(settings.kafka, topic, input_end_ms=input_end(items))
    wait_until_worker_consumed(settings, restarted)

    _assert_outputs_equal_the_replay(items, settings)
    assert "the input topic was recreated or truncated" in restarted.log_tail(100_000)
