"""The real ``cxstream sink`` on the real broker: no record stops it, no outage loses one.

Output records are produced straight to the output topics (the worker's own
validation would stop a NUL byte before it reaches them), among them records the
database refuses and bytes no codec reads. The sink must store every other
record, dead-letter exactly the bad ones with their reason, and keep consuming;
while the database is down or locked it must retry and dead-letter nothing.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from pipeline.contract.codec import RecordCodec
from pipeline.dlq import parse_dead_letter_headers
from pipeline.settings import Settings
from pipeline.sink.store import dump_tables
from pipeline.topics import CONTACTS, DLQ
from tests.integration.postgres_fixtures import PostgresServer
from tests.integration.worker_harness import (
    WorkerProcess,
    free_port,
    metric_value,
    read_topic,
    settings_with_topics,
    wait_until_sink_consumed,
    write_config,
)
from tests.unit.test_sink_store import MINUTE, T0, contact

StartSink = Callable[[str], WorkerProcess]
Sent = dict[str, tuple[int, int]]  # contact id (or label) -> (partition, offset)
CODEC = RecordCodec("contact")


@pytest.fixture
def settings(kafka_bootstrap: str, unique_prefix: str) -> Settings:
    return settings_with_topics(
        {"kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix}}
    )


@pytest.fixture
def start_sink(tmp_path: Path, settings: Settings) -> Iterator[StartSink]:
    started: list[WorkerProcess] = []

    def start(db_url: str) -> WorkerProcess:
        config = {
            "kafka": {
                "bootstrap": settings.kafka.bootstrap,
                "topic_prefix": settings.kafka.topic_prefix,
            },
            "sql": {"url": db_url, "batch_size": 200, "batch_seconds": 0.3},
        }
        name = f"sink{len(started)}"
        config_file = write_config(tmp_path / f"{name}.yaml", config)
        process = WorkerProcess("sink", config_file, tmp_path / f"{name}.log", free_port())
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()


def contact_value(contact_id: str, index: int, **overrides: Any) -> bytes:
    _, record = contact(contact_id, "chat", T0 + index * MINUTE, "resolved", 5.0)
    return CODEC.encode({**record, **overrides})


def produce(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> Sent:
    """Send (label, key, value) records to the contacts topic; where each landed."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    try:
        topic = settings.kafka.topic(CONTACTS)
        futures = {
            label: producer.send(topic, key=key, value=value) for label, key, value in records
        }
        producer.flush()
        return {
            label: (metadata.partition, metadata.offset)
            for label, future in futures.items()
            for metadata in (future.get(timeout=30),)
        }
    finally:
        producer.close()


def good_contacts(start: int, count: int) -> list[tuple[str, bytes, bytes]]:
    return [
        (f"c{i:03}", f"c{i:03}".encode(), contact_value(f"c{i:03}", i))
        for i in range(start, start + count)
    ]


def dead_letters(settings: Settings) -> dict[bytes, dict[str, str]]:
    """The DLQ's records as key -> cx.dlq headers (a key twice would fail the count)."""
    records = read_topic(settings.kafka.bootstrap, settings.kafka.topic(DLQ))
    letters = {record.key: parse_dead_letter_headers(record.headers) for record in records}
    assert len(letters) == len(records), "a dead letter was sent twice"
    return letters


def expected_key(settings: Settings, sent: Sent, label: str) -> bytes:
    partition, offset = sent[label]
    return f"{settings.kafka.topic(CONTACTS)}/{partition}/{offset}".encode()


def stored_contact_ids(url: str) -> list[str]:
    return [row["contact_id"] for row in dump_tables(url)["contacts"]]


def reason(letter: dict[str, str]) -> tuple[str, str]:
    return letter["cx.dlq.stage"], letter["cx.dlq.error.class"]


def test_nul_characters_are_dead_lettered_and_the_postgres_sink_goes_on(
    settings: Settings, start_sink: StartSink, pg_database_url: str
) -> None:
    sink = start_sink(pg_database_url)
    bad = [
        ("nul-id", b"bad-1", contact_value("c\x00nul", 100)),
        ("nul-topic", b"bad-2", contact_value("c101", 101, topic="lo\x00an")),
        ("garbage", b"bad-3", b"not an avro record"),
    ]
    records = [*good_contacts(0, 20), *bad[:2], *good_contacts(20, 20), *bad[2:]]
    sent = produce(settings, records)
    wait_until_sink_consumed(settings.kafka.bootstrap, settings, sink)

    assert stored_contact_ids(pg_database_url) == [f"c{i:03}" for i in range(40)]
    letters = dead_letters(settings)
    assert {key: reason(letter) for key, letter in letters.items()} == {
        expected_key(settings, sent, "nul-id"): ("sink", "SinkRejectedError"),
        expected_key(settings, sent, "nul-topic"): ("sink", "SinkRejectedError"),
        expected_key(settings, sent, "garbage"): ("decode", "DecodeError"),
    }
    nul_letter = letters[expected_key(settings, sent, "nul-id")]
    assert "0x00" in nul_letter["cx.dlq.error.message"]
    assert nul_letter["cx.dlq.source.key"] == "bad-1"
    assert metric_value(sink.web_port, "cxstream_dead_letters_total", stage="sink") == 2.0
    assert metric_value(sink.web_port, "cxstream_dead_letters_total", stage="decode") == 1.0
    assert metric_value(sink.web_port, "cxstream_sink_database_up") == 1.0

    # Still consuming: later records are stored.
    produce(settings, good_contacts(40, 10))
    wait_until_sink_consumed(settings.kafka.bootstrap, settings, sink)
    assert stored_contact_ids(pg_database_url) == [f"c{i:03}" for i in range(50)]
    assert len(dead_letters(settings)) == 3


def test_a_postgres_outage_is_retried_and_a_refused_record_dead_lettered_only_after_it(
    settings: Settings, start_sink: StartSink, dedicated_postgres: PostgresServer
) -> None:
    """Down is not refused: nothing is dead-lettered while the server is stopped."""
    sink = start_sink(dedicated_postgres.url)
    produce(settings, good_contacts(0, 5))
    wait_until_sink_consumed(settings.kafka.bootstrap, settings, sink)

    dedicated_postgres.stop()
    nul = ("nul", b"bad", contact_value("c\x00x", 15))
    sent = produce(settings, [*good_contacts(5, 10), nul, *good_contacts(16, 4)])
    database_up = []
    for _ in range(8):
        time.sleep(1.0)
        database_up.append(metric_value(sink.web_port, "cxstream_sink_database_up"))
    sink.assert_running()
    assert dead_letters(settings) == {}
    dedicated_postgres.start()
    wait_until_sink_consumed(settings.kafka.bootstrap, settings, sink)

    assert 0.0 in database_up
    assert metric_value(sink.web_port, "cxstream_sink_database_up") == 1.0
    assert (
        metric_value(sink.web_port, "cxstream_sink_errors_total", reason="SinkUnavailableError") > 0
    )
    assert stored_contact_ids(dedicated_postgres.url) == [f"c{i:03}" for i in range(20) if i != 15]
    assert {key: reason(letter) for key, letter in dead_letters(settings).items()} == {
        expected_key(settings, sent, "nul"): ("sink", "SinkRejectedError")
    }


def test_a_locked_sqlite_database_is_retried_and_refused_data_dead_lettered(
    settings: Settings, start_sink: StartSink, tmp_path: Path
) -> None:
    """Locked (another writer holds it past the 5 s busy timeout) vs refused (a
    stamp no datetime holds): the first waits, the second goes to the DLQ."""
    path = tmp_path / "sink.db"
    url = f"sqlite:///{path}"
    sink = start_sink(url)
    produce(settings, good_contacts(0, 5))
    wait_until_sink_consumed(settings.kafka.bootstrap, settings, sink)

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        overflow = ("overflow", b"bad", contact_value("c010", 10, started_at=2**62))
        sent = produce(settings, [*good_contacts(5, 5), overflow, *good_contacts(11, 4)])
        deadline = time.monotonic() + 30
        while metric_value(sink.web_port, "cxstream_sink_database_up") != 0.0:
            assert time.monotonic() < deadline, "the sink never noticed the lock"
            time.sleep(0.5)
        assert dead_letters(settings) == {}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_until_sink_consumed(settings.kafka.bootstrap, settings, sink)

    assert stored_contact_ids(url) == [f"c{i:03}" for i in range(15) if i != 10]
    letters = dead_letters(settings)
    assert {key: reason(letter) for key, letter in letters.items()} == {
        expected_key(settings, sent, "overflow"): ("sink", "SinkRejectedError")
    }
    assert (
        "OverflowError" in letters[expected_key(settings, sent, "overflow")]["cx.dlq.error.message"]
    )
    assert metric_value(sink.web_port, "cxstream_sink_database_up") == 1.0
