"""Run real cxstream workers as child processes and read what they produced.

Used by the end-to-end tests: the worker under test is the real ``cxstream
worker`` / ``cxstream sink`` command in its own process (so it can be killed
with SIGKILL), talking to the real local Kafka broker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client.parser import text_string_to_metric_families

from pipeline.contract.codec import RecordCodec
from pipeline.core.records import OUTPUT_TYPES, OutputRecord
from pipeline.errors import BrokerError
from pipeline.producer import EventProducer
from pipeline.settings import KafkaSettings, Settings
from pipeline.settings_loader import build_settings
from pipeline.streaming import OUTPUT_TOPIC_SUFFIX
from pipeline.tools.simulator import SimItem
from pipeline.topics import INTERACTIONS, TopicSpec, ensure_topics, project_topics
from tests.sink_kept import KEYS

#: Fields that legitimately differ between a live run and a replay: how often
#: open-session updates were flushed is a matter of wall-clock throttling.
VOLATILE_FIELDS = {"session": ("version",)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
    return path


def settings_with_topics(config: Mapping[str, Any]) -> Settings:
    """Settings built from ``config``, with every project topic created on its broker."""
    settings = build_settings(config)
    ensure_topics(settings.kafka, project_topics(settings.kafka))
    return settings


class WorkerProcess:
    """``cxstream <role>`` as a child process with its log in a file."""

    def __init__(self, role: str, config_file: Path, log_file: Path, web_port: int) -> None:
        self.role = role
        self.config_file = config_file
        self.log_file = log_file
        self.web_port = web_port
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> WorkerProcess:
        self._log = log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "--config",
                str(self.config_file),
                self.role,
                "--web-port",
                str(self.web_port),
                "--loglevel",
                # info or debug to see Faust's recovery and assignment in the
                # worker logs under the test's tmp_path.
                os.environ.get("CXSTREAM_TEST_WORKER_LOGLEVEL", "warn"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._close_log()

    def assert_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.role} exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_file.read_text(errors="replace")[-chars:]


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group) or {}
    except KafkaError:
        return {}  # the group has not formed yet
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def commit_offsets(bootstrap: str, group: str, topic: str, offsets: Mapping[int, int]) -> None:
    """Set ``group``'s committed offsets of ``topic`` (the group must have no members)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, p) for p in offsets])
        consumer.commit(
            {
                TopicPartition(topic, p): OffsetAndMetadata(offset, "", -1)
                for p, offset in offsets.items()
            }
        )
    finally:
        consumer.close()


def recreate_topic(bootstrap: str, topic: str, spec: TopicSpec, timeout: float = 60.0) -> None:
    """Delete ``topic`` and create it again empty (its offsets start from 0)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
        deadline = time.monotonic() + timeout
        while topic in admin.list_topics():
            assert time.monotonic() < deadline, f"{topic} was not deleted within {timeout}s"
            time.sleep(0.2)
    finally:
        admin.close()
    while True:
        try:
            ensure_topics(KafkaSettings(bootstrap=bootstrap), {topic: spec})
            return
        except BrokerError:  # the deletion may still be finishing on the broker
            assert time.monotonic() < deadline, f"{topic} was not created within {timeout}s"
            time.sleep(0.5)


def wait_until_consumed(
    bootstrap: str,
    group: str,
    topic: str,
    worker: WorkerProcess,
    timeout: float = 240.0,
) -> None:
    """Wait until ``group`` committed every record currently in ``topic``."""
    deadline = time.monotonic() + timeout
    ends = end_offsets(bootstrap, topic)
    while time.monotonic() < deadline:
        worker.assert_running()
        committed = committed_offsets(bootstrap, group, topic)
        if all(committed.get(p, 0) >= end for p, end in ends.items()):
            return
        time.sleep(0.5)
    raise AssertionError(
        f"{group} did not consume {topic} within {timeout}s: "
        f"ends={ends} committed={committed_offsets(bootstrap, group, topic)}\n{worker.log_tail()}"
    )


def wait_until_worker_consumed(
    settings: Settings, worker: WorkerProcess, timeout: float = 240.0
) -> None:
    """Wait until the worker applied every record now in the input topic.

    Committed offsets alone are not proof: a partition resumes from the position
    stored with its state, which can be behind an offset someone else committed.
    The worker's lag gauge counts from the last record whose effects are in its
    state.
    """
    deadline = time.monotonic() + timeout
    topic = input_topic(settings)
    wait_until_consumed(settings.kafka.bootstrap, process_group(settings), topic, worker, timeout)
    partitions = sorted(end_offsets(settings.kafka.bootstrap, topic))
    lags: dict[int, float | str] = {}
    while time.monotonic() < deadline:
        worker.assert_running()
        for partition in partitions:
            try:
                lags[partition] = metric_value(
                    worker.web_port, "cxstream_consumer_lag", topic=topic, partition=str(partition)
                )
            except (AssertionError, OSError) as exc:  # gauge not set yet / page not up
                lags[partition] = str(exc)
        if all(lag == 0 for lag in lags.values()):
            return
        time.sleep(0.5)
    raise AssertionError(f"worker did not apply every record of {topic}: lag {lags}")


def send_items(items: Iterable[SimItem], settings: Settings) -> None:
    """Produce simulator items to the input topic (malformed ones as raw bytes), then flush."""
    with EventProducer(settings.kafka, input_topic(settings), settings.channels) as producer:
        for item in items:
            if item.event is not None:
                producer.send(item.event)
            else:
                assert item.malformed_bytes is not None
                producer.send_raw(b"malformed", item.malformed_bytes)
        producer.flush()


def input_end(items: Iterable[SimItem]) -> int | None:
    """Latest event time of the events among ``items``: the end-of-input marker carries
    it, so every partition ends where ``cxstream replay`` ends them."""
    times = [item.event.occurred_at for item in items if item.event is not None]
    return max(times) if times else None


def read_topic(bootstrap: str, topic: str, idle_seconds: float = 2.0) -> list[Any]:
    """Every record of ``topic`` from the beginning, in per-partition order.

    Read committed, as the sink and every downstream reader must read a worker
    that runs exactly once (``worker.guarantee``); without transactions it is
    the same as read uncommitted.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        consumer_timeout_ms=int(idle_seconds * 1000),
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records = []
        for record in consumer:
            records.append(record)
            if all(consumer.position(tp) >= ends[tp] for tp in partitions):
                break
        return records
    finally:
        consumer.close()


def read_outputs(bootstrap: str, settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Decoded output records per output name, in per-key order."""
    outputs: dict[str, list[dict[str, Any]]] = {}
    for cls, suffix in OUTPUT_TOPIC_SUFFIX.items():
        codec = RecordCodec(cls.OUTPUT_NAME)
        records = read_topic(bootstrap, settings.kafka.topic(suffix))
        outputs[cls.OUTPUT_NAME] = [codec.decode(r.value) for r in records]
    return outputs


def normalise(records: Iterable[OutputRecord]) -> dict[str, list[dict[str, Any]]]:
    """Replay records in the shape they have after a trip through Kafka."""
    codecs = {cls.OUTPUT_NAME: RecordCodec(cls.OUTPUT_NAME) for cls in OUTPUT_TYPES}
    out: dict[str, list[dict[str, Any]]] = {cls.OUTPUT_NAME: [] for cls in OUTPUT_TYPES}
    for record in records:
        codec = codecs[record.OUTPUT_NAME]
        out[record.OUTPUT_NAME].append(codec.decode(codec.encode(record.to_dict())))
    return out


def final_by_key(outputs: Mapping[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict]]:
    """Last record per natural key, volatile fields dropped: what a sink would keep."""
    result: dict[str, dict[str, dict]] = {}
    for name, records in outputs.items():
        key_field = KEYS[name]
        latest: dict[str, dict] = {}
        for record in records:
            kept = {k: v for k, v in record.items() if k not in VOLATILE_FIELDS.get(name, ())}
            latest[record[key_field]] = kept
        result[name] = latest
    return result


def input_topic(settings: Settings) -> str:
    return settings.kafka.topic(INTERACTIONS)


def process_group(settings: Settings) -> str:
    return f"cxstream-{settings.kafka.topic_prefix}-process"


def sink_group(settings: Settings) -> str:
    return f"cxstream-{settings.kafka.topic_prefix}-sink"


def describe_difference(
    actual: Mapping[str, dict], expected: Mapping[str, dict], limit: int = 5
) -> str:
    """A short, readable account of how two ``final_by_key`` results differ."""
    lines = []
    for name in sorted(set(actual) | set(expected)):
        got, want = actual.get(name, {}), expected.get(name, {})
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        changed = sorted(k for k in set(got) & set(want) if got[k] != want[k])
        if missing:
            lines.append(f"{name}: {len(missing)} missing, e.g. {missing[:limit]}")
        if extra:
            lines.append(f"{name}: {len(extra)} unexpected, e.g. {extra[:limit]}")
        for key in changed[:limit]:
            fields = {
                f: (got[key].get(f), want[key].get(f))
                for f in want[key]
                if got[key].get(f) != want[key].get(f)
            }
            lines.append(f"{name} {key}: (streamed, replayed) {fields}")
        if len(changed) > limit:
            lines.append(f"{name}: {len(changed)} changed in all")
    return "\n".join(lines)


# ------------------------------------------------------------------ the SQL sink


def sink_topics(settings: Settings) -> list[str]:
    """The five output topics the sink consumes."""
    return [settings.kafka.topic(suffix) for suffix in OUTPUT_TOPIC_SUFFIX.values()]


def wait_until_sink_consumed(
    bootstrap: str, settings: Settings, sink: WorkerProcess, timeout: float = 240.0
) -> None:
    """Wait until the sink group committed every record now in all five output topics.

    Call it after the worker caught up, so the output topics are complete. The
    sink commits only after a batch's transaction committed, so when this returns
    the tables hold every output record.
    """
    deadline = time.monotonic() + timeout
    group = sink_group(settings)
    ends = {topic: end_offsets(bootstrap, topic) for topic in sink_topics(settings)}

    def behind() -> dict[str, dict[int, tuple[int, int]]]:
        lagging = {}
        for topic, topic_ends in ends.items():
            committed = committed_offsets(bootstrap, group, topic)
            gaps = {
                p: (committed.get(p, 0), end)
                for p, end in topic_ends.items()
                if committed.get(p, 0) < end
            }
            if gaps:
                lagging[topic] = gaps
        return lagging

    while time.monotonic() < deadline:
        sink.assert_running()
        if not behind():
            return
        time.sleep(0.5)
    raise AssertionError(
        f"{group} did not consume the output topics within {timeout}s; "
        f"(committed, end) per lagging partition: {behind()}\n{sink.log_tail()}"
    )


def metric_value(web_port: int, name: str, timeout: float = 5.0, **labels: str) -> float:
    """The sum of every sample called ``name`` on a worker's ``/metrics`` page.

    For an unlabelled gauge that is its value; for a labelled counter, the total
    over the samples whose labels include ``labels``. Raises AssertionError when
    no such sample exists.
    """
    url = f"http://127.0.0.1:{web_port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    assert values, f"{name}{labels or ''} is not on the /metrics page of port {web_port}"
    return float(sum(values))


#: Columns that legitimately differ between a sink-filled and a replay-filled
#: database beyond what ``dump_tables`` already leaves out (``updated_at``).
VOLATILE_TABLE_COLUMNS = {"sessions": ("version",)}


def rows_by_primary_key(
    dump: Mapping[str, list[dict[str, Any]]],
) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """``dump_tables`` output keyed by each table's primary key, volatile columns dropped."""
    from pipeline.sink.models import Base

    keyed: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for name, rows in dump.items():
        key_columns = [c.name for c in Base.metadata.tables[name].primary_key.columns]
        dropped = VOLATILE_TABLE_COLUMNS.get(name, ())
        keyed[name] = {
            tuple(row[c] for c in key_columns): {k: v for k, v in row.items() if k not in dropped}
            for row in rows
        }
    return keyed


def describe_table_difference(
    actual: Mapping[str, Mapping[tuple[Any, ...], dict]],
    expected: Mapping[str, Mapping[tuple[Any, ...], dict]],
    limit: int = 5,
) -> str:
    """Table by table: row counts, missing/extra keys and changed columns (first few)."""
    lines = []
    for name in sorted(set(actual) | set(expected)):
        got, want = actual.get(name, {}), expected.get(name, {})
        missing = sorted(set(want) - set(got), key=repr)
        extra = sorted(set(got) - set(want), key=repr)
        changed = sorted((k for k in set(got) & set(want) if got[k] != want[k]), key=repr)
        if not (missing or extra or changed):
            continue
        lines.append(f"{name}: {len(got)} rows from the sink, {len(want)} from the replay")
        if missing:
            lines.append(f"  {len(missing)} missing, e.g. {missing[:limit]}")
        if extra:
            lines.append(f"  {len(extra)} unexpected, e.g. {extra[:limit]}")
        if changed:
            lines.append(f"  {len(changed)} changed:")
        for key in changed[:limit]:
            columns = sorted(set(got[key]) | set(want[key]))
            fields = {
                c: (got[key].get(c), want[key].get(c))
                for c in columns
                if got[key].get(c) != want[key].get(c)
            }
            lines.append(f"    {key}: (sink, replay) {fields}")
    return "\n".join(lines)


def wait_for_members(bootstrap: str, group: str, count: int, worker: WorkerProcess) -> None:
    """Wait until ``group`` is stable with ``count`` members: a worker's loop joins the
    group after its web pages are up, so /healthz answering says nothing of it."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            worker.assert_running()
            try:
                described = admin.describe_groups([group]).get(group) or {}
            except KafkaError:  # the group's coordinator is not known yet
                described = {}
            members = described.get("members") or []
            if len(members) >= count and described.get("group_state") == "Stable":
                return
            time.sleep(0.2)
    finally:
        admin.close()
    raise AssertionError(f"{group} did not have {count} members within 60s")
