"""The local Kafka launcher and topic creation, against a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError

from pipeline.settings import KafkaSettings
from pipeline.tools.broker import LocalKafka, _pid_alive
from pipeline.topics import TopicSpec, ensure_topics

# The brief's budget for format + start once the jars are cached; generous for CI noise.
START_BUDGET_SECONDS = 15

MakeTopics = Callable[..., list[str]]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.2)
    return not _pid_alive(pid)


def _partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()


def _topic_names(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_broker_serves_metadata_at_its_bootstrap(kafka_bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        brokers = admin.describe_cluster()["brokers"]
    finally:
        admin.close()

    assert len(brokers) == 1


def test_creating_a_six_partition_topic_gives_six_partitions(
    kafka_bootstrap: str, make_topics: MakeTopics
) -> None:
    [name] = make_topics("six", partitions=6)

    assert _partition_counts(kafka_bootstrap, [name]) == {name: 6}


def test_a_produced_record_is_consumed_back(kafka_bootstrap: str, make_topics: MakeTopics) -> None:
    [topic] = make_topics("roundtrip", partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(topic, key=b"customer-1", value=b'{"hello": "bank"}').get(timeout=10)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    received: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 15
    try:
        # Poll until the record arrives (not a fixed wait), then once more to show
        # that nothing else follows it.
        while not received and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend((record.key, record.value) for record in records)
        for records in consumer.poll(timeout_ms=500).values():
            received.extend((record.key, record.value) for record in records)
    finally:
        consumer.close()

    assert received == [(b"customer-1", b'{"hello": "bank"}')]


def test_ensure_topics_is_idempotent(kafka_bootstrap: str, unique_prefix: str) -> None:
    specs = {
        f"{unique_prefix}.a": TopicSpec(partitions=2, retention_ms=60_000),
        f"{unique_prefix}.b": TopicSpec(partitions=1, retention_ms=60_000),
    }

    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    first = ensure_topics(kafka, specs)
    second = ensure_topics(kafka, specs)
    specs[f"{unique_prefix}.c"] = TopicSpec(partitions=1, retention_ms=60_000)
    third = ensure_topics(kafka, specs)

    assert first == [f"{unique_prefix}.a", f"{unique_prefix}.b"]
    assert second == []
    assert third == [f"{unique_prefix}.c"]
    assert _partition_counts(kafka_bootstrap, list(specs)) == {
        f"{unique_prefix}.a": 2,
        f"{unique_prefix}.b": 1,
        f"{unique_prefix}.c": 1,
    }


def test_make_topics_without_suffixes_creates_every_project_topic(
    kafka_bootstrap: str, make_topics: MakeTopics, unique_prefix: str
) -> None:
    names = make_topics()

    assert sorted(names) == sorted(
        f"{unique_prefix}.{suffix}"
        for suffix in (
            "interactions",
            "dlq",
            "late-events",
            "sessions",
            "contacts",
            "sla-events",
            "journey-signals",
            "needs",
            # Issue 16: identity continuity's topics.
            "identity",
            "interactions-rekeyed",
            "identity-links",
        )
    )
    assert _topic_names(kafka_bootstrap) >= set(names)


def test_producing_to_an_unknown_topic_fails_and_creates_nothing(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    topic = f"{unique_prefix}.never-created"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_block_ms=3000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(topic, value=b"lost").get(timeout=10)
    finally:
        producer.close(timeout=5)

    assert topic not in _topic_names(kafka_bootstrap)


def test_start_is_fast_and_stop_leaves_no_java_process(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka")
    started = time.monotonic()
    bootstrap = kafka.start()
    start_seconds = time.monotonic() - started
    pid = kafka.pid
    assert pid is not None
    assert _pid_alive(pid)

    kafka.stop()

    assert bootstrap == f"127.0.0.1:{kafka.port}"
    assert start_seconds < START_BUDGET_SECONDS
    assert kafka.pid is None
    assert not _pid_alive(pid)
    assert kafka.log_file.exists()


LAUNCHER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pipeline.tools.broker import LocalKafka

    kafka = LocalKafka(Path(sys.argv[1]))
    kafka.start()
    print(kafka.pid, flush=True)
    time.sleep(600)
    """
)


@contextmanager
def _python_child(script: str, kafka_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """``script`` in a child Python with ``kafka_dir`` as its argument, stdout and
    stderr piped; on exit it is killed if still running and its pipes are closed."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(kafka_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def test_killing_the_launcher_takes_the_broker_down(tmp_path: Path) -> None:
    try:
        with _python_child(LAUNCHER, tmp_path / "kafka") as launcher:
            assert launcher.stdout is not None
            line = launcher.stdout.readline()
            assert line.strip().isdigit(), launcher.stderr.read() if launcher.stderr else line
            broker_pid = int(line)
            assert _pid_alive(broker_pid)

            # SIGKILL: no atexit, no finally; only the kernel's parent-death signal is left.
            launcher.send_signal(signal.SIGKILL)
            launcher.wait(10)

            assert _wait_gone(broker_pid, timeout=20)
    finally:
        pid_file = tmp_path / "kafka" / "broker.pid"
        if pid_file.exists():  # never leave a JVM behind, even when the test fails
            leftover = int(pid_file.read_text())
            if _pid_alive(leftover):
                os.kill(leftover, signal.SIGKILL)


COMMAND = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipeline.tools.broker import broker_command

    sys.exit(broker_command(Path(sys.argv[1]), None, False))
    """
)


def test_broker_command_announces_itself_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with _python_child(COMMAND, tmp_path / "kafka") as command:
        assert command.stdout is not None
        line = command.stdout.readline()
        fields = dict(part.split("=", 1) for part in line.split()[2:])
        broker_pid = int(fields["pid"])
        assert _pid_alive(broker_pid)

        command.send_signal(signal.SIGTERM)
        exit_code = command.wait(30)

        assert line.startswith("kafka ready bootstrap=127.0.0.1:")
        assert fields["log"] == str(tmp_path / "kafka" / "broker.log")
        assert exit_code == 0
        assert not _pid_alive(broker_pid)
