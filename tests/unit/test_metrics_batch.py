"""Metrics of a batch of output records equal the metrics of the same records one by one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from pipeline.metrics import Metrics
from pipeline.replay import replay_events
from pipeline.settings_loader import build_settings
from pipeline.tools.bench import simulated_events


def exposition(registry: CollectorRegistry) -> list[str]:
    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if "_created" not in line and not line.startswith("#")
    ]


def test_a_batch_of_outputs_moves_every_series_as_the_records_one_by_one_do() -> None:
    settings = build_settings({"replay": {"workers": 1}})
    records = replay_events(simulated_events(6000), settings).records
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    single, batch = Metrics(one_by_one), Metrics(batched)

    for record in records:
        single.observe_output(record)
    for start in range(0, len(records), 500):
        batch.observe_outputs(records[start : start + 500])

    lines = exposition(batched)
    assert lines == exposition(one_by_one)
    moved = [line for line in lines if not line.endswith(" 0.0")]
    # The sample moves counters of several kinds, and first replies are observed.
    assert any(line.startswith("cxstream_sessions_closed_total") for line in moved)
    assert any(line.startswith("cxstream_channel_switch_failures_total{") for line in moved)
    assert any(line.startswith("cxstream_first_reply_seconds_count") for line in moved)
