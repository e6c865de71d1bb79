"""``cxstream worker`` killed mid-stream resumes exactly, at least once and exactly once.

Simulator traffic (with out-of-order, late, duplicate and malformed records) is
in the input topic before the worker starts; the worker is SIGKILLed once it
has committed some batches but not all (checked), and a new one finishes. Its
output topics, read ``read_committed`` and reduced to the last record per
natural key, must equal the offline replay of the same events; exactly once,
no session is finalised twice either, and every malformed record is
dead-lettered exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.control import send_end_of_input
from pipeline.dlq import parse_dead_letter_headers
from pipeline.replay import replay_events
from pipeline.settings import Settings
from pipeline.tools.simulator import SimulatorConfig, generate
from pipeline.topics import DLQ
from tests.integration.worker_harness import (
    WorkerProcess,
    committed_offsets,
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
    send_items,
    settings_with_topics,
    wait_until_worker_consumed,
    write_config,
)

# Large enough that the first worker is still busy when it is killed.
SIM = SimulatorConfig(customers=600, count=15000, seed=5)


def _config(bootstrap: str, prefix: str, guarantee: str) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap": bootstrap, "topic_prefix": prefix},
        "worker": {
            "clock": "stream",
            "batch_size": 200,
            "guarantee": guarantee,
            # The restarted worker is the same worker: it keeps its transactional
            # id, so its producer fences the killed one and aborts its open
            # transaction at once. (The default id includes the web port, which
            # this harness picks afresh for every process; with another id the
            # killed worker's transaction would hold back read_committed readers
            # until the broker's transaction timeout.)
            "transactional_id": f"{prefix}-worker",
            # The input is ended with end-of-input records, as the replay ends it.
            "control_records": True,
        },
    }


def _wait_for_some_commits(settings: Settings, worker: WorkerProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    group, topic = process_group(settings), input_topic(settings)
    while time.monotonic() < deadline:
        worker.assert_running()
        if sum(committed_offsets(settings.kafka.bootstrap, group, topic).values()) > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"no batch committed within {timeout}s:\n{worker.log_tail()}")


def _uncommitted(settings: Settings) -> int:
    bootstrap, topic = settings.kafka.bootstrap, input_topic(settings)
    committed = committed_offsets(bootstrap, process_group(settings), topic)
    return sum(end - committed.get(p, 0) for p, end in end_offsets(bootstrap, topic).items())


def _finals(outputs: dict[str, list[dict[str, Any]]]) -> int:
    return sum(1 for record in outputs["session"] if record["status"] == "final")


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_worker_killed_mid_stream_and_restarted_equals_the_replay(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path, guarantee: str
) -> None:
    config = _config(kafka_bootstrap, unique_prefix, guarantee)
    settings = settings_with_topics(config)
    config_file = write_config(tmp_path / "cxstream.yaml", config)
    items = list(generate(SIM))
    send_items(items, settings)
    killed = WorkerProcess("worker", config_file, tmp_path / "killed.log", free_port()).start()
    restarted = WorkerProcess("worker", config_file, tmp_path / "restarted.log", free_port())
    try:
        _wait_for_some_commits(settings, killed)
        killed.kill()
        assert _uncommitted(settings) > 0, "the worker finished before it was killed"

        restarted.start()
        send_end_of_input(settings.kafka, input_topic(settings), input_end_ms=input_end(items))
        wait_until_worker_consumed(settings, restarted, timeout=240)
    finally:
        killed.stop()
        restarted.stop()

    outputs = read_outputs(settings.kafka.bootstrap, settings)
    events = [item.event for item in items if item.event is not None]
    replayed = normalise(replay_events(events, settings).records)
    actual, expected = final_by_key(outputs), final_by_key(replayed)
    assert actual == expected, describe_difference(actual, expected)
    assert len(expected["session"]) > 100
    if guarantee == "exactly_once":
        # Nothing of the killed worker's open transaction is visible: each
        # session was finalised once, as in the replay.
        assert _finals(outputs) == _finals(replayed)
        malformed = sum(1 for item in items if item.is_malformed)
        dead_letters = read_topic(settings.kafka.bootstrap, settings.kafka.topic(DLQ))
        assert malformed > 0
        assert len(dead_letters) == malformed
        reasons = {parse_dead_letter_headers(r.headers)["cx.dlq.stage"] for r in dead_letters}
        assert reasons <= {"decode", "validate"}
