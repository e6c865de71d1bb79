"""The SQL sink's metrics (docs/ops.md, "Metrics": the `cxstream_sink_*` rows).

Created by :class:`pipeline.metrics.Metrics` against its registry (so the naming
and label checks of tests/unit/test_metrics.py cover them) as ``metrics.sink``,
and fed by the sink's batch writer (:mod:`pipeline.sink.handler`). Labels are the
SQL table and the error class, both bounded by the code.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SINK_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class SinkMetrics:
    """Batches and rows written, batch durations, errors and the retry state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batches = Counter(
            "cxstream_sink_batches_total", "Batches written to SQL.", registry=registry
        )
        self.rows = Counter(
            "cxstream_sink_rows_total",
            "Rows upserted into SQL per table.",
            ("table",),
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "cxstream_sink_batch_seconds",
            "Seconds to write one batch, commit included.",
            buckets=SINK_BATCH_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "cxstream_sink_errors_total",
            "Failed batch writes; reason is the error class.",
            ("reason",),
            registry=registry,
        )
        self.database_up = Gauge(
            "cxstream_sink_database_up",
            "1 if the last database operation succeeded, else 0.",
            registry=registry,
        )
        self.retry_backoff = Gauge(
            "cxstream_sink_retry_backoff_seconds",
            "Current wait before the sink retries the database (0 when healthy).",
            registry=registry,
        )

    def batch_written(self, rows_by_table: Mapping[str, int], seconds: float) -> None:
        """One batch committed: count it, its rows per table and its duration."""
        self.batches.inc()
        for table, rows in rows_by_table.items():
            if rows:
                self.rows.labels(table).inc(rows)
        self.batch_seconds.observe(seconds)
        self.database_up.set(1)
        self.retry_backoff.set(0)

    def error(self, reason: str, *, database_up: bool, backoff_seconds: float) -> None:
        """A batch failed: count it (reason = error class) and show the retry state."""
        self.errors.labels(reason).inc()
        self.database_up.set(1 if database_up else 0)
        self.retry_backoff.set(backoff_seconds)
