"""After a run, the worker's metric totals equal the counts in the SQL store (issue 13).

Ops reads the metrics and CX management reads SQL: for the same events they must
tell the same story. One worker and one sink, no restart (a restarted worker's
counters start again from zero: docs/ops.md), simulator traffic with late,
duplicate and malformed records, the input ended the way the replay ends it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pipeline.control import send_end_of_input
from pipeline.tools.simulator import SimulatorConfig, generate
from tests.integration.worker_harness import (
    WorkerProcess,
    free_port,
    input_end,
    input_topic,
    metric_value,
    send_items,
    settings_with_topics,
    wait_until_sink_consumed,
    wait_until_worker_consumed,
    write_config,
)

# Slow arrivals spread the traffic over hours of event time: sessions close
# mid-stream, web messages breach, some events arrive late.
SIM = SimulatorConfig(customers=150, count=2000, seed=23, arrival_rate_per_hour=120)

#: worker metric -> the SQL count that must equal its total.
METRIC_EQUALS_SQL = {
    # The warning and breach counters are gross: a retracted one is a 'retracted'
    # row in SQL under its own id (docs/sql.md, "Retraction"). "\\:" keeps
    # SQLAlchemy's text() from reading ":breach" as a bind parameter.
    "cxstream_sla_breaches_total": (
        "SELECT count(*) FROM sla_events WHERE kind = 'breach'"
        " OR (kind = 'retracted' AND sla_event_id LIKE '%\\:breach')"
    ),
    "cxstream_sla_warnings_total": (
        "SELECT count(*) FROM sla_events WHERE kind = 'warning'"
        " OR (kind = 'retracted' AND sla_event_id LIKE '%\\:warning')"
    ),
    "cxstream_sla_retractions_total": "SELECT count(*) FROM sla_events WHERE kind = 'retracted'",
    "cxstream_late_events_total": "SELECT count(*) FROM late_events",
    "cxstream_channel_switch_failures_total": "SELECT count(*) FROM channel_switch_failures",
    "cxstream_false_resolutions_total": "SELECT count(*) FROM false_resolutions",
    "cxstream_sessions_closed_total": "SELECT count(*) FROM sessions WHERE status = 'final'",
    "cxstream_first_reply_seconds_count": (
        "SELECT count(*) FROM contacts WHERE first_reply_seconds IS NOT NULL"
    ),
    # Service level: each contact counted once, on the summary that settles it, under
    # the simulator's out-of-order, late and duplicate deliveries (issue 15).
    "cxstream_sla_answered_total": (
        "SELECT count(*) FROM contacts WHERE settled"
        " AND service_level IN ('answered_in_target', 'answered_late')"
    ),
    "cxstream_sla_answered_late_total": (
        "SELECT count(*) FROM contacts WHERE settled AND service_level = 'answered_late'"
    ),
    "cxstream_sla_abandoned_total": (
        "SELECT count(*) FROM contacts WHERE settled AND service_level = 'abandoned'"
    ),
}


@pytest.fixture
def pipeline_run(tmp_path: Path, kafka_bootstrap: str, unique_prefix: str) -> Iterator[tuple]:
    """A worker and a sink on SQLite, run over the simulator traffic to the end."""
    url = f"sqlite:///{tmp_path / 'sink.db'}"
    config = {
        "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
        "worker": {"clock": "stream", "batch_size": 200, "control_records": True},
        "sql": {"url": url, "batch_size": 500, "batch_seconds": 0.5},
    }
    settings = settings_with_topics(config)
    config_file = write_config(tmp_path / "config.yaml", config)
    worker = WorkerProcess("worker", config_file, tmp_path / "worker.log", free_port()).start()
    sink = WorkerProcess("sink", config_file, tmp_path / "sink.log", free_port()).start()
    try:
        items = list(generate(SIM))
        send_items(items, settings)
        send_end_of_input(settings.kafka, input_topic(settings), input_end_ms=input_end(items))
        wait_until_worker_consumed(settings, worker)
        wait_until_sink_consumed(kafka_bootstrap, settings, sink)
        yield worker, url
    finally:
        sink.stop()
        worker.stop()


def _total(web_port: int, name: str) -> int:
    """A counter's total; 0 for a labelled counter nothing has moved yet (it has no
    sample: this traffic may have no contact that settles abandoned)."""
    try:
        return int(metric_value(web_port, name))
    except AssertionError:
        return 0


def test_every_worker_total_equals_its_count_in_sql(pipeline_run: tuple) -> None:
    worker, url = pipeline_run
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            in_sql = {
                name: connection.execute(text(query)).scalar_one()
                for name, query in METRIC_EQUALS_SQL.items()
            }
    finally:
        engine.dispose()
    in_metrics = {name: _total(worker.web_port, name) for name in METRIC_EQUALS_SQL}

    assert in_metrics == in_sql
    assert in_sql["cxstream_sla_breaches_total"] > 0
    assert in_sql["cxstream_sessions_closed_total"] > 100
    assert in_sql["cxstream_late_events_total"] > 0
    assert in_sql["cxstream_sla_answered_total"] > 100
