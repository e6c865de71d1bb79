"""The stream core's child process against the real broker.

The child sends each batch's outputs and state to Kafka itself; what lands in
the topics must be what the same batches give in the worker's own process.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from agents.core_client import CoreClient, CoreProcessFailed
from pipeline.broker import free_port
from pipeline.core_process import BatchResult, CoreServer
from pipeline.settings import Settings, build_settings
from tests.integration.worker_harness import read_topic
from tests.unit.test_core_process import batches, input_records

PRODUCER_CONFIG: dict[str, Any] = {"acks": "all", "linger_ms": 5}


def _settings(bootstrap: str, prefix: str) -> Settings:
    return build_settings(
        {
            "kafka": {"bootstrap": bootstrap, "topic_prefix": prefix},
            "worker": {"clock": "stream", "session_update_seconds": 0},
        }
    )


async def _through_the_child(
    settings: Settings, changelog: str, records: list[tuple]
) -> list[BatchResult]:
    client = CoreClient(settings, separate_process=True)
    await client.start(
        {**PRODUCER_CONFIG, "bootstrap_servers": settings.kafka.bootstrap}, changelog
    )
    try:
        for partition in range(settings.kafka.input_partitions):
            await client.load(partition, [])
        futures = []
        for batch in batches(records, 400):
            for fields in batch:
                client.handle(fields)
            futures.append(client.drain())
        return list(await asyncio.gather(*futures))
    finally:
        await client.close()


def test_the_child_sends_what_the_core_gives_outputs_then_state(
    kafka_bootstrap: str, unique_prefix: str, make_topics
) -> None:
    settings = _settings(kafka_bootstrap, unique_prefix)
    make_topics()
    (changelog,) = make_topics("state-changelog", partitions=settings.kafka.input_partitions)
    records = input_records(1500)

    results = asyncio.run(_through_the_child(settings, changelog, records))
    reference = CoreServer(settings)
    expected = [reference.serve(("batch", batch, None)) for batch in batches(records, 400)]

    assert all(result.sent and result.outgoing == [] for result in results)
    assert [r.state for r in results] == [r.state for r in expected]
    # Per topic and key, the values in the order Kafka keeps them. Dead letters
    # carry the wall time they were made at, so only their count is compared.
    wanted: dict[tuple[str, bytes | None], list[bytes | None]] = defaultdict(list)
    for result in expected:
        for topic, _, key, value, _, _ in result.outgoing:
            wanted[(topic, key)].append(value if not topic.endswith(".dlq") else b"letter")
    landed: dict[tuple[str, bytes | None], list[bytes | None]] = defaultdict(list)
    for topic in {topic for topic, _ in wanted}:
        for record in read_topic(kafka_bootstrap, topic):
            landed[(topic, record.key)].append(
                record.value if not topic.endswith(".dlq") else b"letter"
            )
    assert sum(len(values) for values in wanted.values()) > 300
    assert landed == wanted
    # The changelog holds every state of every batch, each key's in order.
    wanted_state: dict[bytes, list[bytes | None]] = defaultdict(list)
    for result in expected:
        for changes in result.state.values():
            for key, value in changes.items():
                wanted_state[key.encode()].append(value)
    landed_state: dict[bytes, list[bytes | None]] = defaultdict(list)
    for record in read_topic(kafka_bootstrap, changelog):
        landed_state[record.key].append(record.value)
    assert landed_state == wanted_state


def test_a_child_that_dies_fails_the_waiting_batches_with_a_clear_error(
    kafka_bootstrap: str, unique_prefix: str, make_topics
) -> None:
    settings = _settings(kafka_bootstrap, unique_prefix)
    (changelog,) = make_topics("state-changelog")

    async def run() -> str:
        client = CoreClient(settings, separate_process=True)
        await client.start({**PRODUCER_CONFIG, "bootstrap_servers": kafka_bootstrap}, changelog)
        process = client._process
        assert process is not None
        process.kill()
        await process.wait()
        with pytest.raises(CoreProcessFailed) as failed:
            for fields in input_records(10):
                client.handle(fields)
            await client.drain()
        await client.close()
        return str(failed.value)

    assert "exited with code -9" in asyncio.run(run())


def test_a_child_that_cannot_reach_kafka_fails_its_start_with_a_clear_error() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    settings = _settings(nowhere, "nowhere")

    async def run() -> None:
        client = CoreClient(settings, separate_process=True)
        try:
            await asyncio.wait_for(
                client.start({**PRODUCER_CONFIG, "bootstrap_servers": nowhere}, "x"), 120
            )
        finally:
            await client.close()

    with pytest.raises(CoreProcessFailed, match="exited with code 1"):
        asyncio.run(run())
