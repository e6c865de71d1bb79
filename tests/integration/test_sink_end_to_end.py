"""Broker -> worker -> sink -> PostgreSQL fills the same tables as the offline replay.

Simulator traffic (with out-of-order, late, duplicate and malformed records) goes
through the real broker, the real ``cxstream worker`` and the real ``cxstream
sink`` into a PostgreSQL database; a second database is filled from
``replay_events`` of the same events by ``write_records_to_sql``. Every table
must be equal row by row (``sessions.version`` aside, see
``worker_harness.VOLATILE_TABLE_COLUMNS``) — also when the worker is SIGKILLed
mid-stream, and when PostgreSQL is down for 20 s while traffic flows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from pipeline.control import send_end_of_input
from pipeline.replay import replay_events
from pipeline.replay_sql import write_records_to_sql
from pipeline.settings import Settings
from pipeline.settings_loader import build_settings
from pipeline.sink.store import dump_tables
from pipeline.tools.simulator import SimItem, SimulatorConfig, generate
from tests.integration.postgres_fixtures import PostgresServer
from tests.integration.worker_harness import (
    WorkerProcess,
    describe_table_difference,
    free_port,
    input_end,
    input_topic,
    metric_value,
    rows_by_primary_key,
    send_items,
    settings_with_topics,
    wait_until_sink_consumed,
    wait_until_worker_consumed,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

# A slow arrival rate spreads the traffic over hours of event time, so sessions
# close mid-stream (and open updates are superseded) and late events occur.
SIM = SimulatorConfig(customers=150, count=2000, seed=17, arrival_rate_per_hour=120)
OUTAGE_SECONDS = 20.0

StartProcess = Callable[[str], WorkerProcess]


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def replay_database_url(postgres_url: str) -> Iterator[str]:
    """A second fresh database on the session server, for the replay's tables."""
    name = f"cxreplay_{uuid.uuid4().hex[:12]}"
    admin = make_url(postgres_url).set(drivername="postgresql", database="postgres")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def stream_config(kafka_bootstrap: str, unique_prefix: str) -> dict:
    return {
        "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
        "worker": {
            "clock": "stream",
            "batch_size": 200,
            "session_update_seconds": 0.2,
            # The tests end the input with end-of-input control records.
            "control_records": True,
        },
        "sql": {"batch_size": 200, "batch_seconds": 0.5},
    }


@pytest.fixture
def settings(stream_config: dict) -> Settings:
    return settings_with_topics(stream_config)


@pytest.fixture
def start_process(tmp_path: Path, stream_config: dict) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_process(role, db_url=None)``: a ``cxstream worker`` or ``cxstream sink``."""
    started: list[WorkerProcess] = []

    def start(role: str, db_url: str | None = None) -> WorkerProcess:
        config = dict(stream_config)
        if db_url is not None:
            config["sql"] = {**config["sql"], "url": db_url}
        name = f"{role}{len(started)}"
        config_file = write_config(tmp_path / f"{name}.yaml", config)
        process = WorkerProcess(role, config_file, tmp_path / f"{name}.log", free_port())
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()


# ------------------------------------------------------------------- helpers


def _finish(
    settings: Settings, worker: WorkerProcess, sink: WorkerProcess, items: list[SimItem]
) -> None:
    """End the input at the items' end, then wait for the worker and after it for the sink."""
    bootstrap = settings.kafka.bootstrap
    send_end_of_input(settings.kafka, input_topic(settings), input_end_ms=input_end(items))
    wait_until_worker_consumed(settings, worker)
    wait_until_sink_consumed(bootstrap, settings, sink)


def _replay_into(items: list[SimItem], stream_config: dict, url: str) -> None:
    settings = build_settings({**stream_config, "sql": {**stream_config["sql"], "url": url}})
    events = [item.event for item in items if item.event is not None]
    write_records_to_sql(replay_events(events, settings).records, settings)


def _assert_tables_equal(sink_url: str, replay_url: str) -> None:
    actual = rows_by_primary_key(dump_tables(sink_url))
    expected = rows_by_primary_key(dump_tables(replay_url))
    assert actual == expected, describe_table_difference(actual, expected)
    # Guard against two equally empty databases passing.
    assert len(expected["sessions"]) > 100
    assert len(expected["contacts"]) > 100
    assert len(expected["sla_events"]) > 0
    assert len(expected["late_events"]) > 0
    assert len(expected["channel_stats"]) > 0
    assert len(expected["channel_switch_failures"]) + len(expected["false_resolutions"]) > 0


# --------------------------------------------------------------------- tests


def test_sink_tables_equal_the_replay_row_by_row(
    settings: Settings,
    stream_config: dict,
    start_process: StartProcess,
    pg_database_url: str,
    replay_database_url: str,
) -> None:
    items = list(generate(SIM))
    worker = start_process("worker")
    sink = start_process("sink", pg_database_url)
    send_items(items, settings)
    _finish(settings, worker, sink, items)

    _replay_into(items, stream_config, replay_database_url)
    _assert_tables_equal(pg_database_url, replay_database_url)
    # Rows are counted per SQL table; every stored session was upserted at least once.
    sessions = len(dump_tables(pg_database_url)["sessions"])
    assert metric_value(sink.web_port, "cxstream_sink_rows_total", table="sessions") >= sessions


def test_sink_tables_survive_a_worker_sigkill(
    settings: Settings,
    stream_config: dict,
    start_process: StartProcess,
    pg_database_url: str,
    replay_database_url: str,
) -> None:
    items = list(generate(SIM))
    first, second = items[: len(items) // 2], items[len(items) // 2 :]
    worker = start_process("worker")
    sink = start_process("sink", pg_database_url)
    send_items(first, settings)
    wait_until_worker_consumed(settings, worker)
    send_items(second, settings)
    time.sleep(0.5)  # let it get part-way into the second half
    worker.kill()

    restarted = start_process("worker")
    _finish(settings, restarted, sink, items)

    _replay_into(items, stream_config, replay_database_url)
    _assert_tables_equal(pg_database_url, replay_database_url)


def test_sink_waits_out_a_20_second_database_outage_and_loses_nothing(
    settings: Settings,
    stream_config: dict,
    start_process: StartProcess,
    dedicated_postgres: PostgresServer,
    replay_database_url: str,
) -> None:
    items = list(generate(SIM))
    third = len(items) // 3
    before, during = items[:third], items[third:]
    worker = start_process("worker")
    sink = start_process("sink", dedicated_postgres.url)
    send_items(before, settings)
    wait_until_worker_consumed(settings, worker)

    dedicated_postgres.stop()
    stopped_at = time.monotonic()
    database_up_during_outage = []
    chunks = [during[i : i + 100] for i in range(0, len(during), 100)]
    for chunk in chunks:
        send_items(chunk, settings)
        time.sleep(0.5)
        database_up_during_outage.append(metric_value(sink.web_port, "cxstream_sink_database_up"))
    while time.monotonic() - stopped_at < OUTAGE_SECONDS:
        database_up_during_outage.append(metric_value(sink.web_port, "cxstream_sink_database_up"))
        time.sleep(1.0)
    sink.assert_running()
    dedicated_postgres.start()

    _finish(settings, worker, sink, items)

    assert 0.0 in database_up_during_outage
    assert metric_value(sink.web_port, "cxstream_sink_database_up") == 1.0
    assert metric_value(sink.web_port, "cxstream_sink_errors_total") > 0
    _replay_into(items, stream_config, replay_database_url)
    _assert_tables_equal(dedicated_postgres.url, replay_database_url)


def test_sink_stopped_during_a_database_outage_loses_nothing(
    settings: Settings,
    stream_config: dict,
    start_process: StartProcess,
    dedicated_postgres: PostgresServer,
    replay_database_url: str,
) -> None:
    """SIGTERM while a batch waits for the database: its offsets must not be committed."""
    items = list(generate(SIM))
    half = len(items) // 2
    worker = start_process("worker")
    sink = start_process("sink", dedicated_postgres.url)
    send_items(items[:half], settings)
    wait_until_worker_consumed(settings, worker)

    dedicated_postgres.stop()
    send_items(items[half:], settings)
    deadline = time.monotonic() + 30
    while metric_value(sink.web_port, "cxstream_sink_database_up") != 0.0:
        assert time.monotonic() < deadline, "the sink never noticed the outage"
        time.sleep(0.5)
    sink.stop()
    dedicated_postgres.start()
    restarted = start_process("sink", dedicated_postgres.url)

    _finish(settings, worker, restarted, items)
    _replay_into(items, stream_config, replay_database_url)
    _assert_tables_equal(dedicated_postgres.url, replay_database_url)
