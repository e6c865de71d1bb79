"""No single record stops the worker (issue 12), on the real broker.

Two records that stopped the worker before, each reproduced from the issue:

* a 1 MiB record that does not decode: its dead letter (value + reason
  headers) was larger than the broker's limit, the send failed, the worker
  exited and crashed again on the same record after every restart;
* a valid-looking event with an attribute of 300,000 control characters: its
  late-event record grew to ~1.8 MB of JSON escapes. Validation now refuses it
  (attribute limits), so it must be dead-lettered, not crash anything.

They go in between simulator traffic to the real ``cxstream worker``. At the
end the worker must still run and have consumed everything, each poison record
must be in the dead-letter topic exactly once with its stage and reason, and
the outputs must equal the offline replay of the good events alone.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from pipeline.contract.codec import EventCodec
from pipeline.contract.event import CUSTOMER, CUSTOMER_MESSAGE, InteractionEvent
from pipeline.control import send_end_of_input
from pipeline.dlq import dead_letter_key, parse_dead_letter_headers, record_size
from pipeline.replay import replay_events
from pipeline.settings import Settings
from pipeline.tools.simulator import SimulatorConfig, generate
from pipeline.topics import DLQ
from tests.integration.worker_harness import (
    WorkerProcess,
    describe_difference,
    final_by_key,
    free_port,
    input_end,
    input_topic,
    metric_value,
    normalise,
    read_outputs,
    read_topic,
    send_items,
    settings_with_topics,
    wait_until_worker_consumed,
    write_config,
)

SIM = SimulatorConfig(customers=60, count=1200, seed=29)
MIB = 1024 * 1024


@pytest.fixture
def config(kafka_bootstrap: str, unique_prefix: str) -> dict:
    return {
        "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
        "worker": {
            "clock": "stream",
            "batch_size": 200,
            "session_update_seconds": 0.2,
            # The test ends the input with end-of-input control records.
            "control_records": True,
        },
    }


@pytest.fixture
def settings(config: dict) -> Settings:
    settings = settings_with_topics(config)
    # The broker's default limit (1 MiB + 12 bytes per batch) would refuse the
    # 1 MiB record on the way in; the case is one the broker accepted.
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    try:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    input_topic(settings),
                    configs={"max.message.bytes": str(3 * MIB)},
                )
            ]
        )
    finally:
        admin.close()
    return settings


@pytest.fixture
def worker(tmp_path: Path, config: dict) -> Iterator[WorkerProcess]:
    config_file = write_config(tmp_path / "cxstream.yaml", config)
    process = WorkerProcess("worker", config_file, tmp_path / "worker.log", free_port()).start()
    yield process
    process.stop()


def _send_raw(settings: Settings, key: bytes, value: bytes) -> tuple[int, int]:
    """Send one record as a producer that skips the library's checks; its (partition, offset)."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap, acks="all", max_request_size=3 * MIB
    )
    try:
        metadata = producer.send(input_topic(settings), key=key, value=value).get(timeout=30)
        return metadata.partition, metadata.offset
    finally:
        producer.close()


def test_a_1_mib_undecodable_record_and_a_300k_control_character_event_stop_nothing(
    settings: Settings, worker: WorkerProcess
) -> None:
    items = list(generate(SIM))
    half = len(items) // 2
    topic = input_topic(settings)
    send_items(items[:half], settings)

    # The single-object Avro marker, then bytes no schema fingerprint matches.
    huge = (b"\xc3\x01" + hashlib.sha256(b"poison").digest() * (MIB // 32))[:MIB]
    huge_at = _send_raw(settings, b"poison-1mib", huge)
    escapes = InteractionEvent(
        event_id="poison-control-characters",
        occurred_at=next(item.event.occurred_at for item in items if item.event is not None),
        customer_id="poison-customer",
        channel="chat",
        contact_id="poison-contact",
        type=CUSTOMER_MESSAGE,
        actor=CUSTOMER,
        attributes={"note": "\x01" * 300_000},
    )
    escapes_at = _send_raw(settings, b"poison-customer", EventCodec().encode(escapes))

    send_items(items[half:], settings)
    send_end_of_input(settings.kafka, topic, input_end_ms=input_end(items))
    wait_until_worker_consumed(settings, worker)
    worker.assert_running()

    dead_letters = read_topic(settings.kafka.bootstrap, settings.kafka.topic(DLQ))
    copies = Counter(letter.key for letter in dead_letters)
    assert max(copies.values()) == 1, [key for key, n in copies.items() if n > 1]
    malformed = sum(1 for item in items if item.is_malformed)
    assert len(dead_letters) == malformed + 2
    by_key = {letter.key: letter for letter in dead_letters}

    big_letter = by_key[dead_letter_key(topic, *huge_at)]
    big = parse_dead_letter_headers(big_letter.headers)
    assert (big["cx.dlq.stage"], big["cx.dlq.truncated"]) == ("decode", "value")
    assert big["cx.dlq.source.key"] == "poison-1mib"
    assert big["cx.dlq.value.sha256"] == hashlib.sha256(huge).hexdigest()
    assert big["cx.dlq.value.bytes"] == str(MIB)
    assert huge.startswith(big_letter.value) and len(big_letter.value) > 800_000
    cap = settings.limits.max_record_bytes
    assert record_size(big_letter.key, big_letter.value, big_letter.headers) <= cap

    escaped = parse_dead_letter_headers(by_key[dead_letter_key(topic, *escapes_at)].headers)
    assert (escaped["cx.dlq.stage"], escaped["cx.dlq.error.class"]) == (
        "validate",
        "ValidationError",
    )
    assert escaped["cx.dlq.error.field"].startswith("attributes")

    assert metric_value(worker.web_port, "cxstream_dead_letters_total", stage="decode") >= 1
    actual = final_by_key(read_outputs(settings.kafka.bootstrap, settings))
    good = [item.event for item in items if item.event is not None]
    expected = final_by_key(normalise(replay_events(good, settings).records))
    assert actual == expected, describe_difference(actual, expected)
    assert len(expected["session"]) > 50
    worker.assert_running()
