"""``simulate_command(to_kafka=True)`` against a real broker: everything sent arrives."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from uuid import uuid4

from kafka import KafkaConsumer

from pipeline.settings_loader import build_settings
from pipeline.tools.simulate_cli import simulate_command
from pipeline.tools.simulator import SimulatorConfig, generate

MakeTopics = Callable[..., list[str]]
ITEMS = 3000
READ_TIMEOUT_SECONDS = 60


def _read_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes | None, bytes]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"simulate-test-{uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records: list[tuple[bytes | None, bytes]] = []
    try:
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend((record.key, record.value) for record in batch)
        # One more poll: more records than sent would be a bug too.
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend((record.key, record.value) for record in batch)
    finally:
        consumer.close()
    return records


def test_simulated_items_all_arrive_on_the_interactions_topic(
    kafka_bootstrap: str, unique_prefix: str, make_topics: MakeTopics
) -> None:
    (topic,) = make_topics("interactions", partitions=3)
    settings = build_settings(
        {"kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix}}
    )
    stderr = io.StringIO()

    code = simulate_command(
        settings=settings,
        customers=200,
        count=ITEMS,
        seed=7,
        start=None,
        rate=None,
        output=None,
        to_kafka=True,
        bootstrap=kafka_bootstrap,
        stderr=stderr,
        profile=SimulatorConfig,
    )

    records = _read_all(kafka_bootstrap, topic, ITEMS)
    items = list(generate(SimulatorConfig(customers=200, count=ITEMS, seed=7)))
    malformed = sorted(item.malformed_bytes for item in items if item.malformed_bytes)
    assert code == 0
    assert len(records) == ITEMS
    # Valid events are keyed by customer; malformed bytes go out unkeyed, verbatim.
    assert sorted(value for key, value in records if key is None) == malformed
    keys = {key for key, _ in records if key is not None}
    assert keys == {item.event.customer_id.encode() for item in items if item.event}
    assert f"simulate done sent={ITEMS} " in stderr.getvalue()
