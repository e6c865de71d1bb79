"""The stream core behind its process boundary: requests, replies and metrics.

The child process must change nothing: the same records give the same outputs,
state and metrics as the handler called directly in the worker.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.bench import simulated_events
from pipeline.contract.codec import EventCodec
from pipeline.core.partitioning import partition_for
from pipeline.core_process import BatchResult, CoreServer, replay_metrics
from pipeline.metrics import PROCESSING_LATENCY_BUCKETS, LatencyCounts, Metrics
from pipeline.settings import build_settings
from pipeline.streaming import RawRecord, StreamHandler

SETTINGS = build_settings(
    {
        "kafka": {"topic_prefix": "t"},
        # Open-session updates on every drain, so timing cannot change what a drain holds.
        # End-of-input control records honoured: the metrics test closes every session.
        "worker": {"clock": "stream", "session_update_seconds": 0, "control_records": True},
    }
)
PARTITIONS = SETTINGS.kafka.input_partitions
NOW_MS = 1_800_000_000_000


def input_records(count: int) -> list[tuple]:
    """Simulator events as (partition, offset, key, value, timestamp, headers), with
    a record that does not decode and one keyed by something else among them."""
    codec = EventCodec()
    offsets: dict[int, int] = {}
    records = []
    for index, event in enumerate(simulated_events(count)):
        key = event.customer_id.encode()
        value = codec.encode(event)
        if index == 10:
            value = b"not avro"
        if index == 20:
            key = b"someone-else"
        partition = partition_for(key.decode(), PARTITIONS)
        offset = offsets[partition] = offsets.get(partition, -1) + 1
        records.append((partition, offset, key, value, None, ()))
    return records


def batches(records: list[tuple], size: int = 250) -> list[list[tuple]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def test_batches_through_the_server_give_the_outputs_and_state_of_the_handler_itself() -> None:
    records = input_records(2000)
    server = CoreServer(SETTINGS, wall_clock_ms=lambda: NOW_MS)
    direct = StreamHandler(SETTINGS, wall_clock_ms=lambda: NOW_MS)

    served_outputs, served_state, direct_outputs, direct_state = [], [], [], []
    for batch in batches(records):
        result = server.serve(("batch", batch, None))
        served_outputs += result.outgoing
        served_state.append(result.state)
        for fields in batch:
            direct.handle(RawRecord("t.interactions", *fields))
        drained = direct.drain()
        direct_outputs += [
            (o.topic, o.partition, o.key, o.value, o.timestamp_ms, o.headers or ())
            for o in drained.outgoing
        ]
        direct_state.append(drained.state)

    assert len(served_outputs) > 500
    assert served_outputs == direct_outputs
    assert served_state == direct_state


def test_metrics_repeated_in_the_worker_equal_those_of_the_handler_itself() -> None:
    records = input_records(2000)
    records.append(records[5])  # a redelivery: skipped by offset, counted
    server = CoreServer(SETTINGS, wall_clock_ms=lambda: NOW_MS)
    direct_registry, replayed_registry = CollectorRegistry(), CollectorRegistry()
    direct = StreamHandler(SETTINGS, metrics=Metrics(direct_registry), wall_clock_ms=lambda: NOW_MS)
    replayed = Metrics(replayed_registry)

    for batch in batches(records):
        replay_metrics(server.serve(("batch", batch, None)), replayed)
        for fields in batch:
            direct.handle(RawRecord("t.interactions", *fields))
        direct.drain()
    # End of input closes every session: finals, breaches and switch failures move too.
    for partition in range(PARTITIONS):
        replay_metrics(server.serve(("batch", [_end_of_input(partition)], None)), replayed)
        direct.handle(RawRecord("t.interactions", *_end_of_input(partition)))
        direct.drain()

    latency_sum = "cxstream_processing_latency_seconds_sum"

    def exposition(registry: CollectorRegistry) -> str:
        # _created samples are the time each series was first touched; the
        # latency sum is added per batch, so its last digits may round apart.
        text = generate_latest(registry).decode()
        return "\n".join(
            line
            for line in text.splitlines()
            if "_created" not in line and not line.startswith(latency_sum)
        )

    assert "cxstream_dead_letters_total" in exposition(replayed_registry)
    assert _sample(replayed_registry, "cxstream_sessions_closed_total") >= 50
    assert exposition(replayed_registry) == exposition(direct_registry)
    assert _sample(replayed_registry, latency_sum) == pytest.approx(
        _sample(direct_registry, latency_sum), rel=1e-12
    )


def _end_of_input(partition: int) -> tuple:
    return (partition, 10_000_000, None, None, None, (("cx-control", b"end-of-input"),))


def _sample(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_latencies_counted_per_bucket_add_up_like_observing_each_one() -> None:
    values = [-2.0, 0.0, 0.01, 0.0100001, 0.05, 3.0, 7200.0, 10**9]
    observed_registry, added_registry = CollectorRegistry(), CollectorRegistry()
    observed, added = Metrics(observed_registry), Metrics(added_registry)
    counts = LatencyCounts()
    for value in values:
        observed.observe_processing_latency(value)
        counts.add(value)

    added.add_processing_latencies(counts)

    def buckets(registry: CollectorRegistry) -> list[float | None]:
        name = "cxstream_processing_latency_seconds_bucket"
        bounds = [str(float(b)) for b in PROCESSING_LATENCY_BUCKETS] + ["+Inf"]
        return [registry.get_sample_value(name, {"le": le}) for le in bounds] + [
            registry.get_sample_value("cxstream_processing_latency_seconds_sum")
        ]

    assert buckets(added_registry) == buckets(observed_registry)
    assert buckets(added_registry)[-2:] == [8.0, sum(max(v, 0.0) for v in values)]


def test_a_tick_reports_the_gauges_of_the_partitions_it_advanced() -> None:
    records = input_records(500)
    server = CoreServer(SETTINGS, wall_clock_ms=lambda: NOW_MS)
    result = server.serve(("batch", records, [0, 1]))

    assert isinstance(result, BatchResult)
    assert result.records == 500
    assert result.dead_letter_topic == "t.dlq"  # where a record the broker refuses goes
    assert result.gauges is not None and set(result.gauges) == {0, 1}
    assert result.gauges[0].open_sessions > 0
    assert result.gauges[0].clock_ms is not None
