"""The hot path (``pipeline/hotpath``) on a real broker: killed mid-stream, it resumes exactly.

Simulator traffic (with out-of-order, late, duplicate and malformed records)
goes to the input topic; the hot path runs as ``cxstream bench runtime`` runs
it (``python -m pipeline.bench_runtime child``, hosted in a Faust app), is
SIGKILLed once it has committed some batches but not all (checked), and a
new one finishes. Its output
topics, read ``read_committed`` and reduced to the last record per natural
key, must equal the offline replay of the same events; with transactions, no
session is finalised twice either.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.bench_peers import read_topic
from pipeline.bench_runtime import ensure_hotpath_topics, hotpath_group
from pipeline.contract.codec import RecordCodec
from pipeline.control import send_end_of_input
from pipeline.replay import replay_events
from pipeline.settings import Settings, build_settings
from pipeline.simulator import SimulatorConfig, generate
from pipeline.streaming import OUTPUT_TOPIC_SUFFIX
from tests.integration.worker_harness import (
    committed_offsets,
    describe_difference,
    end_offsets,
    final_by_key,
    input_end,
    input_topic,
    normalise,
    send_items,
    wait_until_consumed,
)

# Large enough that the first hot path is still busy when it is killed.
SIM = SimulatorConfig(customers=600, count=15000, seed=5)
BATCH = 200


class HotPathProcess:
    """One ``pipeline.bench_runtime child`` process, its output in a log file."""

    def __init__(self, settings: Settings, guarantee: str, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.bench_runtime",
                "child",
                "--bootstrap",
                settings.kafka.bootstrap,
                "--input-topic",
                input_topic(settings),
                "--prefix",
                settings.kafka.topic_prefix,
                "--guarantee",
                guarantee,
                "--batch-size",
                str(BATCH),
                "--control-records",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def assert_running(self) -> None:
        assert self.process.poll() is None, f"the hot path exited:\n{self.log_tail()}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture
def settings(kafka_bootstrap: str, unique_prefix: str) -> Settings:
    settings = build_settings(
        {
            "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
            # What the child runs with (pipeline/bench_runtime.py), so the replay matches.
            "worker": {"clock": "stream", "batch_size": BATCH, "control_records": True},
        }
    )
    ensure_hotpath_topics(settings.kafka)
    return settings


@pytest.fixture
def start_hot_path(settings: Settings, tmp_path: Path):
    started: list[HotPathProcess] = []

    def start(guarantee: str) -> HotPathProcess:
        process = HotPathProcess(settings, guarantee, tmp_path / f"hotpath{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def _committed_outputs(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    outputs: dict[str, list[dict[str, Any]]] = {}
    for cls, suffix in OUTPUT_TOPIC_SUFFIX.items():
        codec = RecordCodec(cls.OUTPUT_NAME)
        records = read_topic(settings.kafka, settings.kafka.topic(suffix))
        outputs[cls.OUTPUT_NAME] = [codec.decode(value) for _key, value in records]
    return outputs


def _wait_for_some_commits(
    settings: Settings, process: HotPathProcess, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    group, topic = hotpath_group(settings.kafka), input_topic(settings)
    while time.monotonic() < deadline:
        process.assert_running()
        if sum(committed_offsets(settings.kafka.bootstrap, group, topic).values()) > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"no batch committed within {timeout}s:\n{process.log_tail()}")


def _uncommitted(settings: Settings, topic: str) -> int:
    bootstrap = settings.kafka.bootstrap
    committed = committed_offsets(bootstrap, hotpath_group(settings.kafka), topic)
    return sum(end - committed.get(p, 0) for p, end in end_offsets(bootstrap, topic).items())


def _finals(outputs: dict[str, list[dict[str, Any]]]) -> int:
    return sum(1 for record in outputs["session"] if record["status"] == "final")


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_hot_path_killed_mid_stream_and_restarted_equals_the_replay(
    settings: Settings, start_hot_path, guarantee: str
) -> None:
    items = list(generate(SIM))
    send_items(items, settings)
    killed = start_hot_path(guarantee)
    _wait_for_some_commits(settings, killed)
    killed.kill()
    topic = input_topic(settings)
    left = _uncommitted(settings, topic)
    assert left > 0, "the first hot path finished before it was killed: nothing was tested"

    restarted = start_hot_path(guarantee)
    send_end_of_input(settings.kafka, topic, input_end_ms=input_end(items))
    wait_until_consumed(
        settings.kafka.bootstrap, hotpath_group(settings.kafka), topic, restarted, timeout=240
    )

    outputs = _committed_outputs(settings)
    events = [item.event for item in items if item.event is not None]
    replayed = normalise(replay_events(events, settings).records)
    actual, expected = final_by_key(outputs), final_by_key(replayed)
    assert actual == expected, describe_difference(actual, expected)
    assert len(expected["session"]) > 100
    if guarantee == "exactly_once":
        # Nothing of the killed worker's open transaction is visible: each
        # session was finalised once, as in the replay.
        assert _finals(outputs) == _finals(replayed)
