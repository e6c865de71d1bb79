"""The standing adversarial suite of issue 12: no single record stops the pipeline.

Simulator traffic with every kind of hostile record of ``adversarial_corpus``
mixed in goes, in one interleaved order, through the real broker, the real
``cxstream worker`` and the real ``cxstream sink`` into SQLite and into
PostgreSQL. Each backend runs the pipeline once (a module-scoped fixture) and
the tests below check what it left:

* the worker and the sink are alive and consumed everything;
* every bad record is in ``<prefix>.dlq`` under its deterministic key
  ``<source topic>/<partition>/<offset>``, with the expected stage and a reason,
  and no key carries two different reasons (a re-sent dead letter is collapsed
  by key, as docs/producers.md tells readers to);
* wrong and null keys are re-keyed, duplicate ids dropped, neither dead-lettered;
* the good events' rows equal ``cxstream replay --db`` of the good events alone.

The worker runs with ``worker.control_records`` off (the default), so the
forged end-of-input must be dead-lettered and must close nothing. To end the
input the way a replay does, it is then restarted with control records on and
the project's own marker is sent: the restart resumes after the stored
position, so nothing is processed twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy import make_url

from pipeline.contract.codec import HEADER_LENGTH
from pipeline.contract.jsonform import event_to_json_line
from pipeline.contract.schemas import load_versions
from pipeline.control import send_end_of_input
from pipeline.dlq import (
    ERROR_MESSAGE,
    SOURCE_KEY,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    STAGE,
    TRUNCATED,
    VALUE_BYTES,
    VALUE_SHA256,
    parse_dead_letter_headers,
)
from pipeline.kafka_clients import kafka_python_options
from pipeline.settings import Settings
from pipeline.settings_loader import build_settings
from pipeline.sink.store import dump_tables
from pipeline.tools.simulator import SimulatorConfig, generate
from pipeline.topics import DLQ, TopicSpec, ensure_topics, project_topics
from tests.integration.adversarial_corpus import (
    DEAD_LETTER_CASES,
    DUPLICATE_ID,
    ONE_MIB,
    REKEYED_CASES,
    AdversarialRecord,
    build_corpus,
    interleave,
    simulator_records,
)
from tests.integration.worker_harness import (
    WorkerProcess,
    describe_table_difference,
    free_port,
    input_topic,
    metric_value,
    read_topic,
    rows_by_primary_key,
    wait_until_sink_consumed,
    wait_until_worker_consumed,
    write_config,
)

# Slow arrivals spread the traffic over many hours of event time, so sessions
# close mid-stream, SLA clocks run out and late events occur. The simulator's
# fixed start (March 2026) is in the past, so no good event is "in the future".
SIM = SimulatorConfig(customers=200, count=3000, seed=12, arrival_rate_per_hour=150)
# The input topic must accept the ~1 MiB record (the broker default is 1 MiB
# including the batch overhead); the producer's request limit likewise.
INPUT_MAX_MESSAGE_BYTES = 4 * ONE_MIB
WORKER_TIMEOUT = 90.0
SINK_TIMEOUT = 60.0
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@dataclass(frozen=True)
class Sent:
    """A corpus or traffic record and where the broker put it."""

    record: AdversarialRecord
    partition: int
    offset: int

    def dead_letter_key(self, topic: str) -> bytes:
        return f"{topic}/{self.partition}/{self.offset}".encode()


@dataclass
class AdversarialRun:
    """What one run of the pipeline over the corpus left behind."""

    backend: str
    settings: Settings
    sent: list[Sent]
    dead_letters: list[Any] = field(default_factory=list)
    input_records: list[Any] = field(default_factory=list)
    #: Steps of the run that failed (a worker that died, a sink that stalled).
    problems: list[str] = field(default_factory=list)
    alive: dict[str, bool] = field(default_factory=dict)
    duplicates_counted: float | None = None
    replay_duplicates: int | None = None
    sink_rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    replay_rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return input_topic(self.settings)

    def of_case(self, name: str) -> list[Sent]:
        return [s for s in self.sent if s.record.name == name]

    def letters_by_key(self) -> dict[bytes | None, list[dict[str, str]]]:
        by_key: dict[bytes | None, list[dict[str, str]]] = defaultdict(list)
        for letter in self.dead_letters:
            by_key[letter.key].append(parse_dead_letter_headers(letter.headers))
        return by_key

    def letters_by_source(self) -> dict[tuple[int, int], list[Any]]:
        """Dead letters by the source partition/offset their headers name (key aside)."""
        by_source: dict[tuple[int, int], list[Any]] = defaultdict(list)
        for letter in self.dead_letters:
            headers = parse_dead_letter_headers(letter.headers)
            with contextlib.suppress(KeyError, ValueError):
                source = (int(headers[SOURCE_PARTITION]), int(headers[SOURCE_OFFSET]))
                by_source[source].append(letter)
        return by_source


class _LargeRecordTopic(TopicSpec):
    """The input topic's spec with ``max.message.bytes`` raised for the 1 MiB record."""

    def configs(self) -> dict[str, str]:
        return {**TopicSpec.configs(self), "max.message.bytes": str(INPUT_MAX_MESSAGE_BYTES)}


# ------------------------------------------------------------------ databases


def _admin_dsn(url: str) -> str:
    return (
        make_url(url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )


@contextlib.contextmanager
def _databases(
    backend: str, request: pytest.FixtureRequest, folder: Path
) -> Iterator[tuple[str, str]]:
    """Two fresh databases: the sink's and the replay's."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'sink.db'}", f"sqlite:///{folder / 'replay.db'}"
        return
    server_url = request.getfixturevalue("postgres_url")
    names = [f"cxadv_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with psycopg.connect(_admin_dsn(server_url), autocommit=True) as admin:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        sink_url, replay_url = (
            make_url(server_url).set(database=name).render_as_string(hide_password=False)
            for name in names
        )
        yield sink_url, replay_url
    finally:
        with psycopg.connect(_admin_dsn(server_url), autocommit=True) as admin:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------ the run


def _config(bootstrap: str, prefix: str, *, url: str, control_records: bool) -> dict:
    return {
        "kafka": {"bootstrap": bootstrap, "topic_prefix": prefix},
        "worker": {
            "clock": "stream",
            "batch_size": 200,
            "session_update_seconds": 0.2,
            "control_records": control_records,
        },
        "sql": {"url": url, "batch_size": 200, "batch_seconds": 0.5},
    }


def _send(records: list[AdversarialRecord], settings: Settings) -> list[Sent]:
    """Produce ``records`` in order; tail records only after the rest is acknowledged."""
    producer = KafkaProducer(
        **kafka_python_options(settings.kafka),
        client_id="cxstream-adversarial",
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=INPUT_MAX_MESSAGE_BYTES,
    )
    topic = input_topic(settings)
    futures = []
    try:
        flushed = False
        for record in records:
            if record.tail and not flushed:
                producer.flush(60)
                flushed = True
            futures.append(
                producer.send(
                    topic,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers) or None,
                    partition=record.partition,
                )
            )
        producer.flush(60)
        metadata = [future.get(timeout=30) for future in futures]
    finally:
        producer.close()
    return [Sent(r, m.partition, m.offset) for r, m in zip(records, metadata, strict=True)]


def _replay(good: list[AdversarialRecord], config: dict, folder: Path) -> int:
    """``cxstream replay --db`` of the good events alone; returns its duplicate count."""
    events_file = folder / "good-events.jsonl"
    events_file.write_text(
        "".join(event_to_json_line(r.event) + "\n" for r in good if r.event is not None),
        encoding="utf-8",
    )
    config_file = write_config(folder / "replay.yaml", config)
    command = [sys.executable, "-m", "pipeline.cli", "--config", str(config_file), "replay"]
    command += [str(events_file), "--out", str(folder / "replay"), "--db", config["sql"]["url"]]
    result = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    summary = next(line for line in result.stdout.splitlines() if line.startswith("replay events"))
    fields = dict(part.split("=", 1) for part in summary.split()[1:])
    return int(fields["duplicates"])


def _delete_topics(settings: Settings) -> None:
    # The session broker is thrown away at the end; a failed delete costs memory only.
    with contextlib.suppress(KafkaError, OSError):
        admin = KafkaAdminClient(
            **kafka_python_options(settings.kafka), client_id="cxstream-test-cleanup"
        )
        try:
            prefix = f"{settings.kafka.topic_prefix}."
            names = [t for t in admin.list_topics() if t.startswith(prefix)]
            admin.delete_topics(names, timeout_ms=10_000, raise_errors=False)
        finally:
            admin.close()


def _attempt(run: AdversarialRun, step: str, action: Any) -> None:
    """Run one step; a failure is recorded for the liveness test, not raised."""
    started = time.monotonic()
    try:
        action()
    except Exception as exc:  # whatever stops a step is the finding, reported by a test
        run.problems.append(f"{step}: {str(exc)[:3000]}")
    finally:
        run.seconds[step] = round(time.monotonic() - started, 1)


@pytest.fixture(scope="module", params=BACKENDS)
def run(
    request: pytest.FixtureRequest,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AdversarialRun]:
    """The pipeline run once over simulator traffic plus the corpus, into one backend."""
    backend: str = request.param
    folder = tmp_path_factory.mktemp(f"adversarial-{backend}")
    prefix = f"adv{uuid.uuid4().hex[:10]}"
    processes: list[WorkerProcess] = []

    def start(role: str, config: dict) -> WorkerProcess:
        name = f"{role}{len(processes)}"
        config_file = write_config(folder / f"{name}.yaml", config)
        process = WorkerProcess(role, config_file, folder / f"{name}.log", free_port())
        processes.append(process.start())
        return process

    started = time.monotonic()
    with _databases(backend, request, folder) as (sink_url, replay_url):
        config = _config(kafka_bootstrap, prefix, url=sink_url, control_records=False)
        settings = build_settings(config)
        topics = project_topics(settings.kafka)
        spec = topics[input_topic(settings)]
        topics[input_topic(settings)] = _LargeRecordTopic(
            spec.partitions, spec.retention_ms, spec.cleanup_policy, spec.replication_factor
        )
        ensure_topics(settings.kafka, topics)

        items = list(generate(SIM))
        traffic = simulator_records(items)
        sim_events = [r.event for r in traffic if r.event is not None]
        skew_ms = settings.limits.max_future_skew_seconds * 1000
        assert max(e.occurred_at for e in sim_events) < time.time() * 1000 - skew_ms
        corpus = build_corpus(sim_events, partitions=settings.kafka.input_partitions)
        ordered = interleave(traffic, corpus)
        try:
            worker = start("worker", config)
            sink = start("sink", config)
            result = AdversarialRun(backend, settings, _send(ordered, settings))

            def first_worker_consumes() -> None:
                wait_until_worker_consumed(settings, worker, WORKER_TIMEOUT)
                # Again with the log ends as they are now: the re-keyed copies
                # the worker appended to the input topic are processed too.
                wait_until_worker_consumed(settings, worker, WORKER_TIMEOUT)
                result.duplicates_counted = metric_value(
                    worker.web_port, "cxstream_duplicate_events_total"
                )

            _attempt(result, "worker with control records off", first_worker_consumes)
            worker.stop()

            ending = _config(kafka_bootstrap, prefix, url=sink_url, control_records=True)
            closer = start("worker", ending)

            def end_of_input() -> None:
                # The latest event time of the good events: every partition ends
                # there, as the replay of the good events ends them.
                good_times = [
                    s.record.event.occurred_at
                    for s in result.sent
                    if not s.record.is_bad and s.record.event is not None
                ]
                send_end_of_input(
                    settings.kafka, input_topic(settings), input_end_ms=max(good_times)
                )
                wait_until_worker_consumed(settings, closer, WORKER_TIMEOUT)

            _attempt(result, "worker ending the input", end_of_input)
            _attempt(
                result,
                "sink",
                lambda: wait_until_sink_consumed(kafka_bootstrap, settings, sink, SINK_TIMEOUT),
            )
            result.alive = {p.role: p.process is not None and p.process.poll() is None
                            for p in (closer, sink)}  # fmt: skip
            result.dead_letters = read_topic(kafka_bootstrap, settings.kafka.topic(DLQ))
            result.input_records = read_topic(kafka_bootstrap, input_topic(settings))

            def compare_tables() -> None:
                # In send order, so the re-keyed records come last in the replay
                # too, as they do on their target partitions.
                good = [s.record for s in result.sent if not s.record.is_bad]
                replay_config = _config(
                    kafka_bootstrap, prefix, url=replay_url, control_records=False
                )
                result.replay_duplicates = _replay(good, replay_config, folder)
                result.replay_rows = rows_by_primary_key(dump_tables(replay_url))
                result.sink_rows = rows_by_primary_key(dump_tables(sink_url))

            _attempt(result, "tables", compare_tables)
            result.seconds["total"] = round(time.monotonic() - started, 1)
            print(f"\nadversarial run {backend}: {result.seconds} problems={len(result.problems)}")
            yield result
        finally:
            for process in processes:
                process.stop()
            _delete_topics(settings)


# ------------------------------------------------------------------ the tests


def test_the_corpus_holds_every_case_and_its_enum_index_is_really_negative() -> None:
    """The corpus itself, without a broker: every named case is built, and the
    hand-built enum index is one plain fastavro reads as a real symbol."""
    items = list(generate(SimulatorConfig(customers=20, count=200, seed=12)))
    corpus = build_corpus([i.event for i in items if i.event is not None], partitions=6)
    names = {r.name for r in corpus}
    assert {n for n in names if n in DEAD_LETTER_CASES} == set(DEAD_LETTER_CASES) - {
        "simulator-malformed"
    }
    assert [r.partition for r in corpus if r.name == "forged-end-of-input"] == list(range(6))
    (negative,) = (r for r in corpus if r.name == "negative-enum-index-in-type")
    assert negative.value is not None
    # The version the codec wrote it with: the one whose fingerprint is in its header.
    (version,) = (
        v
        for v in load_versions("interaction_event")
        if negative.value[:HEADER_LENGTH].endswith(v.fingerprint)
    )
    body = BytesIO(negative.value[HEADER_LENGTH:])
    record: Any = fastavro.schemaless_reader(body, version.schema, None)  # a record reads as a dict
    assert record["type"] == "agent_reply"
    assert len(next(r for r in corpus if r.name == "undecodable-1mib").value or b"") == ONE_MIB


def test_the_worker_and_the_sink_stay_up_and_consume_everything(run: AdversarialRun) -> None:
    assert run.problems == [], "\n\n".join(run.problems)
    assert run.alive == {"worker": True, "sink": True}


@pytest.mark.parametrize("case", sorted(DEAD_LETTER_CASES))
def test_each_bad_record_is_dead_lettered_once_under_its_source_position_with_its_stage(
    run: AdversarialRun, case: str
) -> None:
    sent = run.of_case(case)
    assert sent, f"the corpus has no {case} record"
    by_key = run.letters_by_key()
    by_source = run.letters_by_source()
    wrong = []
    for record in sent:
        key = record.dead_letter_key(run.topic)
        letters = by_key.get(key, [])
        if not letters:
            elsewhere = [r.key for r in by_source.get((record.partition, record.offset), [])]
            wrong.append(
                f"{key.decode()}: not in the DLQ under that key"
                + (f" (dead-lettered under key {elsewhere[0]!r})" if elsewhere else "")
            )
            continue
        # Several letters under one key are a re-send of one dead letter; the
        # reasons test checks they agree.
        stages = {h.get(STAGE) for h in letters}
        messages = {h.get(ERROR_MESSAGE, "") for h in letters}
        if stages != {DEAD_LETTER_CASES[case]}:
            wrong.append(f"{key.decode()}: stage {stages}, expected {DEAD_LETTER_CASES[case]}")
        if "" in messages:
            wrong.append(f"{key.decode()}: dead letter without a reason")
        source_keys = {h.get(SOURCE_KEY) for h in letters}
        if record.record.key is not None and source_keys != {record.record.key.decode()}:
            wrong.append(f"{key.decode()}: original key {source_keys}, sent {record.record.key!r}")
    assert wrong == [], f"{len(wrong)} of {len(sent)} {case} records:\n" + "\n".join(wrong)


def test_the_1_mib_dead_letter_is_cut_to_the_record_limit_and_says_so(
    run: AdversarialRun,
) -> None:
    (sent,) = run.of_case("undecodable-1mib")
    assert sent.record.value is not None
    letters = [r for r in run.dead_letters if r.key == sent.dead_letter_key(run.topic)]
    assert letters, "the 1 MiB record is not in the DLQ"
    headers = parse_dead_letter_headers(letters[0].headers)
    assert (headers.get(TRUNCATED), headers.get(VALUE_BYTES), headers.get(VALUE_SHA256)) == (
        "value",
        str(ONE_MIB),
        hashlib.sha256(sent.record.value).hexdigest(),
    )
    assert sent.record.value.startswith(letters[0].value or b"")
    size = len(letters[0].key or b"") + len(letters[0].value or b"")
    size += sum(len(name) + len(value or b"") for name, value in letters[0].headers)
    assert size <= run.settings.limits.max_record_bytes


def test_no_dead_letter_key_carries_two_different_reasons(run: AdversarialRun) -> None:
    conflicting = {
        key: reasons
        for key, letters in run.letters_by_key().items()
        if len(reasons := {(h.get(STAGE), h.get(ERROR_MESSAGE)) for h in letters}) > 1
    }
    assert conflicting == {}


def test_the_dead_letter_keys_are_exactly_the_bad_records_positions(run: AdversarialRun) -> None:
    expected = {s.dead_letter_key(run.topic) for s in run.sent if s.record.is_bad}
    actual = set(run.letters_by_key())
    assert sorted(actual - expected, key=repr)[:10] == []
    assert sorted(expected - actual, key=repr)[:10] == []


def test_no_good_record_is_dead_lettered(run: AdversarialRun) -> None:
    """By the source position in the headers, so this holds whatever the key is."""
    by_source = run.letters_by_source()
    good_in_dlq = [
        f"{s.record.name} at {s.partition}/{s.offset}"
        for s in run.sent
        if not s.record.is_bad and (s.partition, s.offset) in by_source
    ]
    assert good_in_dlq == []


@pytest.mark.parametrize("case", REKEYED_CASES)
def test_a_record_with_a_wrong_or_null_key_is_republished_keyed_by_its_customer(
    run: AdversarialRun, case: str
) -> None:
    (sent,) = run.of_case(case)
    assert sent.record.event is not None
    customer = sent.record.event.customer_id.encode()
    copies = [
        (r.partition, r.offset)
        for r in run.input_records
        if r.value == sent.record.value and (r.partition, r.offset) != (sent.partition, sent.offset)
    ]
    keys = {r.key for r in run.input_records if (r.partition, r.offset) in copies}
    assert (len(copies), keys) == (1, {customer})
    assert (sent.partition, sent.offset) not in run.letters_by_source()


def test_a_duplicate_event_id_is_dropped_by_the_core_not_dead_lettered(
    run: AdversarialRun,
) -> None:
    duplicates = run.of_case(DUPLICATE_ID)
    by_source = run.letters_by_source()
    assert [
        (s.partition, s.offset) for s in duplicates if (s.partition, s.offset) in by_source
    ] == []
    # The replay drops the same duplicates (the simulator's and the corpus's).
    assert run.replay_duplicates is not None and run.replay_duplicates >= len(duplicates)
    assert run.duplicates_counted == run.replay_duplicates


def test_the_good_events_rows_equal_cxstream_replay_of_the_good_events_alone(
    run: AdversarialRun,
) -> None:
    assert run.replay_rows, "the replay filled no tables"
    assert run.sink_rows == run.replay_rows, describe_table_difference(
        run.sink_rows, run.replay_rows
    )
    # Guard against two equally empty databases passing.
    assert len(run.replay_rows["sessions"]) > 100
    assert len(run.replay_rows["late_events"]) > 0
    assert len(run.replay_rows["sla_events"]) > 0
