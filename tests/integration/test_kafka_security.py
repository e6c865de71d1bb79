"""Every client through a real SASL_SSL (SCRAM-SHA-512) and SSL listener.

The module starts its own broker with ``LocalKafka(secure=True)``: a throw-away
CA and certificates, SCRAM users created when the log is formatted. The worker,
the sink and the producer library connect only to the secured listeners; the
test itself watches offsets through the broker's PLAINTEXT listener.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.control import send_end_of_input
from pipeline.errors import KafkaAuthError
from pipeline.producer import EventProducer
from pipeline.replay import replay_events
from pipeline.replay_sql import write_records_to_sql
from pipeline.settings import KafkaSettings, Settings
from pipeline.settings_loader import build_settings
from pipeline.sink.store import dump_tables
from pipeline.tools.broker import LocalKafka
from pipeline.tools.simulator import SimulatorConfig, generate
from pipeline.topics import INTERACTIONS, ensure_topics, project_topics
from tests.integration.worker_harness import (
    WorkerProcess,
    describe_table_difference,
    free_port,
    rows_by_primary_key,
    wait_until_sink_consumed,
    wait_until_worker_consumed,
    write_config,
)

USERS = {"cx-worker": f"w-{uuid4().hex}", "cx-producer": f"p-{uuid4().hex}"}
SIM = SimulatorConfig(customers=40, count=400, seed=23, arrival_rate_per_hour=120)
#: A refused login must be reported well before kafka-python's 30 s bootstrap timeout.
REFUSAL_SECONDS = 10.0


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = LocalKafka(tmp_path_factory.mktemp("secure-kafka"), secure=True, scram_users=USERS)
    try:
        kafka.start()
        yield kafka
    finally:
        kafka.stop()


def _prefix() -> str:
    return f"s{uuid4().hex[:10]}"


def _watcher(settings: Settings, kafka: LocalKafka) -> Settings:
    """The same settings on the PLAINTEXT listener: how the test reads offsets."""
    plain = KafkaSettings(
        bootstrap=kafka.bootstrap_servers, topic_prefix=settings.kafka.topic_prefix
    )
    return dataclasses.replace(settings, kafka=plain)


def _wrong_password(kafka: LocalKafka, prefix: str) -> KafkaSettings:
    config = kafka.client_config("cx-producer", password="not-the-password")
    return KafkaSettings(**config, topic_prefix=prefix)


def _refusal(kafka: KafkaSettings) -> str:
    return (
        f"Kafka at {kafka.bootstrap} refused SASL_SSL SCRAM-SHA-512 login as 'cx-producer': "
        "authentication failed (check kafka.sasl_username and the password)"
    )


def test_worker_sink_and_producer_work_through_scram_over_tls(
    secure_kafka: LocalKafka, tmp_path: Path
) -> None:
    prefix = _prefix()
    # The worker and sink read their password from a file, as docs/ops.md advises.
    password_file = tmp_path / "worker-password"
    password_file.write_text(USERS["cx-worker"] + "\n", encoding="utf-8")
    kafka_config = {
        **secure_kafka.client_config("cx-worker"),
        "sasl_password": None,
        "sasl_password_file": str(password_file),
        "topic_prefix": prefix,
    }
    config = {
        "kafka": kafka_config,
        "worker": {
            "clock": "stream",
            "batch_size": 200,
            "session_update_seconds": 0.2,
            # The end-of-input marker below closes the sessions, as a replay does.
            "control_records": True,
        },
        "sql": {"url": f"sqlite:///{tmp_path / 'sink.db'}", "batch_size": 200},
    }
    settings = build_settings(config)
    assert ensure_topics(settings.kafka, project_topics(settings.kafka)) != []
    config_file = write_config(tmp_path / "worker.yaml", config)
    worker = WorkerProcess("worker", config_file, tmp_path / "worker.log", free_port()).start()
    sink = WorkerProcess("sink", config_file, tmp_path / "sink.log", free_port()).start()
    try:
        producer_kafka = KafkaSettings(
            **secure_kafka.client_config("cx-producer"), topic_prefix=prefix
        )
        events = [item.event for item in generate(SIM) if item.event is not None]
        topic = producer_kafka.topic(INTERACTIONS)
        with EventProducer(producer_kafka, topic, settings.channels) as producer:
            for event in events:
                producer.send(event)
        input_end_ms = max(event.occurred_at for event in events)
        sent = send_end_of_input(producer_kafka, topic, input_end_ms=input_end_ms)
        assert sent == settings.kafka.input_partitions

        watcher = _watcher(settings, secure_kafka)
        wait_until_worker_consumed(watcher, worker)
        wait_until_sink_consumed(watcher.kafka.bootstrap, watcher, sink)
    finally:
        worker.stop()
        sink.stop()

    replay_url = f"sqlite:///{tmp_path / 'replay.db'}"
    replay_settings = build_settings({**config, "sql": {**config["sql"], "url": replay_url}})
    write_records_to_sql(replay_events(events, replay_settings).records, replay_settings)
    actual = rows_by_primary_key(dump_tables(config["sql"]["url"]))
    expected = rows_by_primary_key(dump_tables(replay_url))
    assert actual == expected, describe_table_difference(actual, expected)
    assert len(expected["sessions"]) > 20
    assert len(expected["contacts"]) > 20


def test_the_producer_library_refuses_a_wrong_password_at_once_with_our_error(
    secure_kafka: LocalKafka,
) -> None:
    kafka = _wrong_password(secure_kafka, _prefix())
    started = time.monotonic()

    with pytest.raises(KafkaAuthError) as refused:
        EventProducer(kafka, kafka.topic(INTERACTIONS), build_settings().channels)

    assert time.monotonic() - started < REFUSAL_SECONDS
    assert str(refused.value) == _refusal(kafka)


def test_cxstream_topics_with_a_wrong_password_exits_with_one_clear_line(
    secure_kafka: LocalKafka, tmp_path: Path
) -> None:
    prefix = _prefix()
    kafka = _wrong_password(secure_kafka, prefix)
    config = write_config(
        tmp_path / "wrong.yaml",
        {"kafka": {**secure_kafka.client_config("cx-producer", password="not-the-password"),
                   "topic_prefix": prefix}},
    )  # fmt: skip
    started = time.monotonic()

    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--config", str(config), "topics"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert time.monotonic() - started < REFUSAL_SECONDS + 10  # interpreter start included
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"cxstream: error: {_refusal(kafka)}"]
    assert _topics(secure_kafka, prefix) == set()


def test_plain_tls_with_a_client_certificate_carries_events(secure_kafka: LocalKafka) -> None:
    prefix = _prefix()
    kafka = KafkaSettings(**secure_kafka.client_config(protocol="SSL"), topic_prefix=prefix)
    topic = kafka.topic(INTERACTIONS)
    ensure_topics(kafka, {topic: project_topics(kafka)[topic]})
    events = [item.event for item in generate(SIM) if item.event is not None][:50]

    with EventProducer(kafka, topic, build_settings().channels) as producer:
        for event in events:
            producer.send(event)

    assert _count(secure_kafka, topic) == 50


def test_a_tls_client_without_its_certificate_is_refused_with_our_error(
    secure_kafka: LocalKafka,
) -> None:
    config = secure_kafka.client_config(protocol="SSL")
    kafka = KafkaSettings(
        **{**config, "ssl_certfile": None, "ssl_keyfile": None}, topic_prefix=_prefix()
    )
    started = time.monotonic()

    with pytest.raises(KafkaAuthError) as refused:
        EventProducer(kafka, kafka.topic(INTERACTIONS), build_settings().channels)

    assert time.monotonic() - started < REFUSAL_SECONDS
    assert str(refused.value).startswith(
        f"Kafka at {kafka.bootstrap}: the SSL TLS handshake failed"
    )


def _topics(kafka: LocalKafka, prefix: str) -> set[str]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        return {name for name in consumer.topics() if name.startswith(prefix)}
    finally:
        consumer.close()


def _count(kafka: LocalKafka, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()
