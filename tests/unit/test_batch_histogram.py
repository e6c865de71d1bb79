"""The batch histogram exposes what prometheus_client's Histogram exposes for the same values."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pipeline.batch_histogram import BatchHistogram

BUCKETS = (0.005, 0.1, 1, 2.5, 60, 3600)
VALUES = [0.0, 0.005, 0.0051, 0.1, 0.7, 1.0, 2.5, 59.9, 60.0, 61.0, 3600.0, 9e9]


def exposition(registry: CollectorRegistry) -> list[str]:
    """The text format without the ``_created`` series only the library's histogram has."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_a_batch_exposes_the_same_buckets_count_and_sum_as_observing_one_by_one() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("cx_latency_seconds", "doc", buckets=BUCKETS, registry=theirs)
    batch = BatchHistogram("cx_latency_seconds", "doc", buckets=BUCKETS, registry=ours)

    for value in VALUES:
        reference.observe(value)
    batch.observe_many(VALUES[:5])
    batch.observe_many(VALUES[5:])

    assert exposition(ours) == exposition(theirs)
    assert ours.get_sample_value("cx_latency_seconds_bucket", {"le": "1.0"}) == 6
    assert ours.get_sample_value("cx_latency_seconds_count") == len(VALUES)


def test_an_empty_histogram_shows_zero_in_every_bucket() -> None:
    registry = CollectorRegistry()
    BatchHistogram("cx_empty_seconds", "doc", buckets=BUCKETS, registry=registry)

    assert registry.get_sample_value("cx_empty_seconds_bucket", {"le": "+Inf"}) == 0
    assert registry.get_sample_value("cx_empty_seconds_sum") == 0


def test_a_second_metric_of_the_same_name_is_refused_by_the_registry() -> None:
    registry = CollectorRegistry()
    BatchHistogram("cx_twice_seconds", "doc", buckets=BUCKETS, registry=registry)

    with pytest.raises(ValueError, match="Duplicated"):
        Histogram("cx_twice_seconds", "doc", buckets=BUCKETS, registry=registry)


def test_buckets_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        BatchHistogram("cx_bad_seconds", "doc", buckets=(1, 1, 2), registry=None)


def test_the_workers_latency_histogram_counts_a_batch_and_an_event_from_the_future_as_zero() -> (
    None
):
    from pipeline.metrics import Metrics

    registry = CollectorRegistry()
    metrics = Metrics(registry)

    metrics.observe_processing_latencies(10_000, [7_000, 10_000, 12_000])

    assert registry.get_sample_value("cxstream_processing_latency_seconds_count") == 3
    assert registry.get_sample_value("cxstream_processing_latency_seconds_sum") == 3.0
    assert (
        registry.get_sample_value("cxstream_processing_latency_seconds_bucket", {"le": "+Inf"}) == 3
    )
