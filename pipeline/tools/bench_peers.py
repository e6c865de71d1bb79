"""``cxstream bench peers``: cxstream against Kafka Streams, on one broker, on the same events.

One local broker (its own temporary directory, a free port, stopped at the end)
gets N simulator events (6 partitions, about N/20 customers, event time in the
past) and then one *flush event* per partition. Three engines then read that
input in turn, each in its own consumer group, with fresh state and its own
output topics:

* ``cxstream`` and ``cxstream_eos``: the worker's stream-core role exactly as
  ``cxstream worker`` runs it (``agents/bench_worker.py --mode full``), at least
  once and exactly once, timed from the first batch committed to the batch
  holding the N-th record committed (outputs and state acknowledged, offsets
  committed, or one transaction); CPU is its one process's;
* ``kstreams_eos`` and ``kstreams_alos``: the Kafka Streams application in
  ``pipeline/tools/peers/kstreams`` (session windows, 30 min gap, 5 min grace,
  ``suppress(untilWindowCloses)``, RocksDB, one stream thread) with
  ``exactly_once_v2`` and ``at_least_once``, timed from the first record's
  timestamp extraction until the group's committed input offsets reach the end
  offsets (outputs are acknowledged by then: flushed before the offset commit,
  or committed in the same transaction); CPU is the JVM's, all its threads.

Start-up (the Faust worker's, the JVM's) is outside the timed span of both;
the JIT compiler's warm-up during the run is inside it: every engine starts cold.

Closing the last sessions: a session closes when its partition's event time
passes its end plus the gap and the grace (in cxstream, the end may be held
later by an open call or branch visit, up to ``session.max_open_contact`` after
its start). The flush event of each partition (a customer key that hashes to
that partition, ``occurred_at`` past the latest close time of every session in
either engine) closes all of them in both engines; the sessions the flush
events open stay open and are never counted. Sessions out are read back from
each engine's output topic: cxstream's distinct sessions with a ``final``
record, Kafka Streams' emitted windows; ``same_bounds`` counts the sessions
(customer, start, end) both engines emitted. They differ where cxstream's
domain rules differ from plain session windows: duplicates and late events are
dropped, and a journey held open by a synchronous contact takes in events that
Kafka Streams splits into two sessions.

Printed: one ``engine=...`` line per engine, then the ratios of cxstream's
events/s to each Kafka Streams run, and ``/proc/loadavg`` before each run (the
machine is shared and the figures move with its load).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.contract.event import InteractionEvent
from pipeline.core.partitioning import partition_for
from pipeline.errors import BrokerError
from pipeline.settings import KafkaSettings, Settings

CXSTREAM = "cxstream"
#: cxstream's worker with ``worker.guarantee: exactly_once`` (a transaction per batch).
CXSTREAM_EOS = "cxstream_eos"
#: The cxstream runs and the guarantee each one uses.
CXSTREAM_GUARANTEES: Mapping[str, str] = {
    CXSTREAM: "at_least_once",
    CXSTREAM_EOS: "exactly_once",
}
KSTREAMS_EOS = "kstreams_eos"
KSTREAMS_ALOS = "kstreams_alos"
#: The Kafka Streams runs and the guarantee each one uses.
KSTREAMS_GUARANTEES: Mapping[str, str] = {
    KSTREAMS_EOS: "exactly_once_v2",
    KSTREAMS_ALOS: "at_least_once",
}
#: Both Kafka Streams runs commit this often (exactly_once_v2's default). With
#: at_least_once's default of 30 s the input would sit processed but uncommitted,
#: its outputs unflushed, for up to 30 s at the end of the run.
KSTREAMS_COMMIT_MS = 100
#: How far past the last session's close time the flush events are dated.
FLUSH_MARGIN_MS = 60_000
FLUSH_CHANNEL = "chat"

PEER_DIR = Path(__file__).resolve().parent / "peers" / "kstreams"
PEER_JAR = PEER_DIR / "target" / "cxstream-kstreams-peer.jar"
#: An engine run may take this long plus a second per 100 events (100k: ~20 minutes).
_RUN_TIMEOUT_BASE_S = 120
_MAVEN_TIMEOUT_S = 900


@dataclass(frozen=True, slots=True)
class EngineResult:
    """One engine's run: the events it read, in how long, at what CPU, with which outputs."""

    engine: str
    events: int
    seconds: float
    cpu_s: float
    sessions_out: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_s / self.events * 1e6

    def line(self) -> str:
        """The printed line; :func:`parse_engine_line` reads it back."""
        return (
            f"engine={self.engine} events_per_s={self.events_per_s:.0f} "
            f"cpu_us_per_event={self.cpu_us_per_event:.0f} sessions_out={self.sessions_out} "
            f"events={self.events} seconds={self.seconds:.3f} cpu_s={self.cpu_s:.3f}"
        )


def parse_engine_line(line: str) -> EngineResult:
    """The :class:`EngineResult` an ``engine=...`` line printed (extra fields are ignored).

    Raises:
        ValueError: the line lacks a field or a number does not parse.
    """
    fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
    try:
        return EngineResult(
            engine=fields["engine"],
            events=int(fields["events"]),
            seconds=float(fields["seconds"]),
            cpu_s=float(fields["cpu_s"]),
            sessions_out=int(fields["sessions_out"]),
        )
    except KeyError as exc:
        raise ValueError(f"not an engine line (no {exc.args[0]}): {line!r}") from None


def parse_report(output: str) -> dict[str, Any]:
    """The last JSON report (``{"events": ...}``) in an engine's output.

    Both the cxstream bench worker and the Kafka Streams app print one; Faust's
    worker sends print() through its logger, so it may sit behind a log prefix.

    Raises:
        ValueError: there is none.
    """
    for line in reversed(output.splitlines()):
        start = line.find('{"events"')
        if start >= 0:
            report: dict[str, Any] = json.loads(line[start:].strip())
            return report
    raise ValueError("no JSON report line in the engine's output")


def ratios(results: Mapping[str, EngineResult]) -> dict[str, float]:
    """cxstream's events/s over each Kafka Streams run's (1.0: as fast).

    ``ratio_vs_*`` is cxstream at least once against each Kafka Streams run;
    ``ratio_eos_vs_kstreams_eos`` compares exactly once with exactly once.
    """
    mine = results[CXSTREAM].events_per_s
    out = {
        f"ratio_vs_{name}": mine / results[name].events_per_s
        for name in (KSTREAMS_EOS, KSTREAMS_ALOS)
        if name in results
    }
    if CXSTREAM_EOS in results and KSTREAMS_EOS in results:
        out["ratio_eos_vs_kstreams_eos"] = (
            results[CXSTREAM_EOS].events_per_s / results[KSTREAMS_EOS].events_per_s
        )
    return out


def ratio_line(results: Mapping[str, EngineResult]) -> str:
    return " ".join(f"{name}={value:.2f}" for name, value in ratios(results).items())


# -- closing the last sessions ------------------------------------------------


def flush_time_ms(
    events: Iterable[InteractionEvent], *, gap_ms: int, grace_ms: int, hold_ms: int = 0
) -> int:
    """Event time of the flush events: past every session's close in both engines.

    A Kafka Streams session closes at its last event plus gap plus grace. A
    cxstream session closes at its *reach* plus gap plus grace, and its reach
    may run up to ``hold_ms`` (``session.max_open_contact``) past the start of
    a synchronous contact still open (pipeline/core/sessions.py). Every start
    and every last event is at most the latest event time.
    """
    latest = max(event.occurred_at for event in events)
    return latest + hold_ms + gap_ms + grace_ms + FLUSH_MARGIN_MS


def flush_customer(partition: int, partitions: int) -> str:
    """The first ``bench-flush-<partition>-<n>`` customer id Kafka routes to ``partition``."""
    for n in range(100_000):
        customer = f"bench-flush-{partition}-{n}"
        if partition_for(customer, partitions) == partition:
            return customer
    raise ValueError(f"no flush customer found for partition {partition} of {partitions}")


def flush_events(at_ms: int, partitions: int) -> list[InteractionEvent]:
    """One valid ``contact_started`` event per partition, dated ``at_ms``."""
    return [
        InteractionEvent(
            event_id=f"bench-flush-{partition}",
            occurred_at=at_ms,
            customer_id=flush_customer(partition, partitions),
            channel=FLUSH_CHANNEL,
            contact_id=f"bench-flush-{partition}",
            type="contact_started",
            actor="customer",
            producer="cxstream-bench-peers",
        )
        for partition in range(partitions)
    ]


# -- outputs --------------------------------------------------------------------

#: A session's identity across engines: customer, first and last event time.
Bounds = tuple[str, int, int]

_KS_HEAD = struct.Struct(">qqiiI")


def kstreams_bounds(key: bytes, value: bytes) -> Bounds:
    """The bounds in a Kafka Streams output record (``SessionAggregate.encodeOutput``)."""
    start, end, _events, _contacts, _path_length = _KS_HEAD.unpack_from(value)
    return (key.decode("utf-8"), start, end)


def cxstream_final_bounds(records: Iterable[Mapping[str, Any]]) -> dict[str, Bounds]:
    """Session id -> bounds of every session with a ``final`` record.

    A final record can come again as a correction (a breach after the close):
    it is one session, counted once.
    """
    finals: dict[str, Bounds] = {}
    for record in records:
        if record["status"] == "final":
            finals[record["session_id"]] = (
                record["customer_id"],
                record["started_at"],
                record["ended_at"],
            )
    return finals


def read_topic(kafka: KafkaSettings, topic: str, timeout_s: float = 120) -> list[tuple[Any, Any]]:
    """Every committed (key, value) of ``topic``, read from the beginning to its end."""
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.kafka_clients import kafka_python_options

    consumer = KafkaConsumer(
        **kafka_python_options(kafka),
        enable_auto_commit=False,
        # The exactly-once run's aborted transactions, if any, are not its outputs.
        isolation_level="read_committed",
        consumer_timeout_ms=1000,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[tuple[Any, Any]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise BrokerError(f"reading {topic} to its end took over {timeout_s:.0f}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((record.key, record.value) for record in batch)
        return records
    finally:
        consumer.close()


# -- the Kafka Streams application ----------------------------------------------


def build_peer(*, force: bool = False) -> Path:
    """The Kafka Streams app's jar, built with Maven when missing or older than its sources.

    Offline first (``mvn -o``: after one online build everything is in the local
    repository), online when that fails.

    Raises:
        BrokerError: Maven or Java is missing, or the build failed.
    """
    sources = [PEER_DIR / "pom.xml", *sorted((PEER_DIR / "src").rglob("*"))]
    newest = max(path.stat().st_mtime for path in sources if path.is_file())
    if not force and PEER_JAR.exists() and PEER_JAR.stat().st_mtime >= newest:
        return PEER_JAR
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH; it builds the Kafka Streams peer")
    output = ""
    for offline in (["-o"], []):
        done = subprocess.run(
            [mvn, "-q", "-B", *offline, "-f", str(PEER_DIR / "pom.xml"), "package"],
            capture_output=True,
            text=True,
            timeout=_MAVEN_TIMEOUT_S,
            check=False,
        )
        if done.returncode == 0 and PEER_JAR.exists():
            return PEER_JAR
        output = done.stdout + done.stderr
    tail = "\n".join(output.splitlines()[-30:])
    raise BrokerError(f"the Kafka Streams peer did not build:\n{tail}")


def _run_kstreams(
    jar: Path,
    kafka: KafkaSettings,
    input_topic: str,
    output_topic: str,
    guarantee: str,
    *,
    timeout_s: float,
) -> dict[str, Any]:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java is not on PATH; the Kafka Streams peer needs Java 17 or newer")
    from pipeline.contract.codec import EventCodec

    with tempfile.TemporaryDirectory(prefix="cxstream-peer-state-") as state_dir:
        arguments = {
            "bootstrap": kafka.bootstrap,
            "input": input_topic,
            "output": output_topic,
            "application-id": f"{kafka.topic_prefix}-kstreams-{guarantee}-{uuid.uuid4().hex[:6]}",
            "state-dir": state_dir,
            "fingerprint": EventCodec().fingerprint.hex(),
            "guarantee": guarantee,
            "commit-ms": str(KSTREAMS_COMMIT_MS),
        }
        command = [java, "-jar", str(jar)]
        for name, value in arguments.items():
            command += [f"--{name}", value]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    try:
        return parse_report(done.stdout)
    except ValueError:
        raise BrokerError(
            f"the Kafka Streams peer ({guarantee}) failed (exit {done.returncode}):\n"
            f"{done.stderr[-3000:]}"
        ) from None


# -- the harness ----------------------------------------------------------------


def loadavg() -> str:
    """The machine's load averages (1, 5, 15 min), printed beside every figure."""
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="ascii").split()[:3])
    except OSError:
        return "n/a"


@dataclass(frozen=True)
class PeerInput:
    """The preloaded input every engine of a run reads: N events, then the flush events."""

    kafka: KafkaSettings
    input_topic: str
    #: Simulator events preloaded (N).
    events: int
    #: N plus one flush event per partition: what each engine reads.
    total: int
    customers: int


def forever_specs(kafka: KafkaSettings) -> dict[str, Any]:
    """The project's topics under ``kafka``'s prefix, outputs kept forever.

    Outputs carry event time (weeks in the past): with a finite retention the
    broker may delete them before they are counted.
    """
    from pipeline.topics import project_topics

    return {
        name: dataclasses.replace(spec, retention_ms=-1)
        for name, spec in project_topics(kafka).items()
    }


def preload_input(settings: Settings, kafka: KafkaSettings, events: int) -> PeerInput:
    """Create ``kafka``'s project topics and preload N simulator events and the flush events."""
    from pipeline.producer import EventProducer
    from pipeline.tools.bench import simulated_events
    from pipeline.topics import INTERACTIONS, ensure_topics

    ensure_topics(kafka, forever_specs(kafka))
    input_topic = kafka.topic(INTERACTIONS)
    batch = simulated_events(events)
    core = settings.core
    flush_at = flush_time_ms(
        batch,
        gap_ms=round(core.session_gap_seconds * 1000),
        grace_ms=round(core.session_grace_seconds * 1000),
        hold_ms=round(core.max_open_contact_seconds * 1000),
    )
    flushes = flush_events(flush_at, kafka.input_partitions)
    with EventProducer(kafka, input_topic, settings.channels) as producer:
        for event in [*batch, *flushes]:
            producer.send(event)
        producer.flush()
    return PeerInput(
        kafka=kafka,
        input_topic=input_topic,
        events=len(batch),
        total=len(batch) + len(flushes),
        customers=len({event.customer_id for event in batch}),
    )


def cxstream_sessions(kafka: KafkaSettings) -> set[Bounds]:
    """The bounds of the sessions with a ``final`` record on ``kafka``'s sessions topic."""
    from pipeline.contract.codec import RecordCodec
    from pipeline.topics import SESSIONS

    codec = RecordCodec("session")
    finals = cxstream_final_bounds(
        codec.decode(value) for _key, value in read_topic(kafka, kafka.topic(SESSIONS))
    )
    return set(finals.values())


def run_kstreams(
    jar: Path, kafka: KafkaSettings, peer_input: PeerInput, name: str
) -> tuple[EngineResult, set[Bounds]]:
    """One Kafka Streams run (``name`` in :data:`KSTREAMS_GUARANTEES`) and its sessions."""
    from pipeline.topics import TopicSpec, ensure_topics

    output_topic = f"{kafka.topic_prefix}.{name}-sessions"
    ensure_topics(
        kafka, {output_topic: TopicSpec(partitions=kafka.output_partitions, retention_ms=-1)}
    )
    timeout_s = _RUN_TIMEOUT_BASE_S + peer_input.total / 100
    report = _run_kstreams(
        jar,
        kafka,
        peer_input.input_topic,
        output_topic,
        KSTREAMS_GUARANTEES[name],
        timeout_s=timeout_s,
    )
    if report.get("undecodable"):
        print(f"bench peers engine={name} skipped undecodable={report['undecodable']}")
    out = [
        kstreams_bounds(key, value)
        for key, value in read_topic(kafka, output_topic)
        if value is not None
    ]
    result = EngineResult(
        name,
        events=int(report["events"]),
        seconds=float(report["seconds"]),
        cpu_s=float(report["cpu_s"]),
        sessions_out=len(out),
    )
    return result, set(out)


def bench_peers(settings: Settings, events: int) -> dict[str, EngineResult]:
    """Run the three engines on one broker and print their lines and the ratios."""
    from pipeline.core import core_mode
    from pipeline.tools.bench import _run_bench_worker
    from pipeline.tools.broker import LocalKafka
    from pipeline.topics import ensure_topics

    jar = build_peer()
    print(f"bench peers load_before={loadavg()} cpus={os.cpu_count()}", flush=True)
    results: dict[str, EngineResult] = {}
    bounds: dict[str, set[Bounds]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="cxstream-bench-peers-") as tmp,
        LocalKafka(Path(tmp) / "kafka") as broker,
    ):
        bootstrap = broker.start()
        prefix = f"peers{uuid.uuid4().hex[:8]}"
        kafka = dataclasses.replace(settings.kafka, bootstrap=bootstrap, topic_prefix=prefix)
        peer_input = preload_input(settings, kafka, events)
        print(
            f"bench peers preloaded events={peer_input.events} "
            f"flush_events={peer_input.total - peer_input.events} "
            f"customers={peer_input.customers} partitions={kafka.input_partitions} "
            # The worker runs the compiled core only when its build is current.
            f"cxstream_core={core_mode()}",
            flush=True,
        )

        for name, guarantee in CXSTREAM_GUARANTEES.items():
            # Each run its own outputs, state and group; all read the one input.
            run_kafka = dataclasses.replace(kafka, topic_prefix=f"{prefix}{name.replace('_', '')}")
            ensure_topics(run_kafka, forever_specs(run_kafka))
            print(f"bench peers engine={name} load_before={loadavg()}", flush=True)
            report = _run_bench_worker(
                "full",
                bootstrap,
                run_kafka.topic_prefix,
                peer_input.total,
                input_topic=peer_input.input_topic,
                guarantee=guarantee,
            )
            bounds[name] = cxstream_sessions(run_kafka)
            results[name] = EngineResult(
                name,
                events=int(report["events"]),
                seconds=float(report["seconds"]),
                cpu_s=float(report["cpu_s"]),
                sessions_out=len(bounds[name]),
            )
            print(results[name].line(), flush=True)

        for name in KSTREAMS_GUARANTEES:
            print(f"bench peers engine={name} load_before={loadavg()}", flush=True)
            results[name], bounds[name] = run_kstreams(jar, kafka, peer_input, name)
            print(results[name].line(), flush=True)
    same = " ".join(
        f"same_bounds_{name}={len(bounds[CXSTREAM] & bounds[name])}"
        for name in (CXSTREAM_EOS, *KSTREAMS_GUARANTEES)
    )
    print(f"bench peers {ratio_line(results)} {same} load_after={loadavg()}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.tools.bench_peers [--events N]``, as ``cxstream bench peers``."""
    import argparse

    from pipeline.settings_loader import load_settings

    parser = argparse.ArgumentParser(prog="python -m pipeline.tools.bench_peers")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args(argv)
    bench_peers(load_settings(args.config), args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
