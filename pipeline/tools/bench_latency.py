"""``cxstream bench latency``: how long after its deadline a breach is readable.

On a local broker, a worker in live mode (``cxstream worker``, the same process
an operator runs) consumes simulator traffic produced in real time (``cxstream
simulate --start now``; none with ``--events 0``, when every partition is quiet
and only the worker's wall-clock tick fires what is due) and probe contacts: a
``customer_message`` on ``chat`` every ``PROBE_SPACING_S`` spread over every
partition, each from a new customer that never sends anything again, under a
short probe policy (``PROBE_TOPIC``, target ``PROBE_TARGET_S``, warning at half
of it). A reader polls the sla-events topic; for every warning and breach record
(probes and simulator clocks alike) the latency is the wall time it was read
minus its due time (``fired_at``: the core stamps a warning or breach with the
time it fell due, an event time that is wall time for events dated as they are
produced).

Every ``LATE_REPLY_EVERY``-th probe gets a *late reply*: an agent reply dated
``LATE_REPLY_BEFORE_MS`` before the probe's deadline, sent ``LATE_REPLY_DELAY_S``
after it (a reply in flight when the breach fired). With the default 0 s skew
the worker fires the breach on time and the reply retracts it
(pipeline/core/retraction.py): ``retractions`` counts every ``retracted``
record read, ``probe_retractions`` those of the probes (one per late reply).
``retractable`` counts the ``completed`` records whose reply is dated before the
breached deadline: breaches that stood although their reply was in time (a
reply that came after the retraction window, or retraction turned off).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.contract.event import InteractionEvent
from pipeline.settings import Settings

PROBE_TOPIC = "latency_probe"
PROBE_CHANNEL = "chat"
PROBE_POLICY = "latency_probe_first_reply"
PROBE_TARGET_S = 10
PROBE_WARNING_SHARE = 0.5
PROBE_SPACING_S = 0.5
#: Wall seconds of probing and of simulator load.
RUN_SECONDS = 90.0
#: Simulator events per second (real time).
SIM_RATE = 50.0
#: Every this many probes, one gets a reply dated before its deadline that is
#: sent after it (a reply in flight when the breach fires).
LATE_REPLY_EVERY = 10
LATE_REPLY_BEFORE_MS = 100
LATE_REPLY_DELAY_S = 0.5
WARNING = "warning"
BREACH = "breach"
COMPLETED = "completed"
RETRACTED = "retracted"


@dataclass
class LatencyReport:
    """What the reader saw; latencies in seconds, per record kind."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {WARNING: [], BREACH: []})
    probe_latencies: list[float] = field(default_factory=list)
    probe_breaches: int = 0
    probes: int = 0
    late_replies: int = 0
    retractions: int = 0
    probe_retractions: int = 0
    retractable: int = 0

    def observe(self, record: dict[str, Any], read_ms: int) -> None:
        """Account one decoded sla-events record read at wall time ``read_ms``."""
        kind = record["kind"]
        if kind in (WARNING, BREACH):
            latency = (read_ms - _ms(record["fired_at"])) / 1000
            self.latencies[kind].append(latency)
            if record["policy"] == PROBE_POLICY:
                self.probe_latencies.append(latency)
                self.probe_breaches += kind == BREACH
        elif kind == RETRACTED:
            self.retractions += 1
            self.probe_retractions += record["policy"] == PROBE_POLICY
        elif (
            kind == COMPLETED
            and record["replied_at"] is not None
            and _ms(record["replied_at"]) < _ms(record["deadline"])
        ):
            self.retractable += 1

    def line(self, *, skew_s: float) -> str:
        both = self.latencies[WARNING] + self.latencies[BREACH]
        return (
            f"bench latency breach_latency_p50_s={percentile(both, 50):.2f} "
            f"breach_latency_p99_s={percentile(both, 99):.2f} "
            f"breach_latency_max_s={max(both, default=math.nan):.2f} "
            f"breaches={len(self.latencies[BREACH])} warnings={len(self.latencies[WARNING])} "
            f"retractions={self.retractions} "
            f"probes={self.probes} probe_breaches={self.probe_breaches} "
            f"probe_p99_s={percentile(self.probe_latencies, 99):.2f} "
            f"late_replies={self.late_replies} probe_retractions={self.probe_retractions} "
            f"retractable={self.retractable} allowed_skew_s={skew_s:g}"
        )


def _ms(value: Any) -> int:
    """Epoch ms of a decoded timestamp-millis (an int, or a datetime from fastavro)."""
    if isinstance(value, int):
        return value
    return round(value.timestamp() * 1000)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``nan`` for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def bench_config(settings: Settings, bootstrap: str, prefix: str, web_port: int) -> dict[str, Any]:
    """The worker's config: ``settings`` on the bench broker, live clock, plus the probe policy."""
    config = copy.deepcopy(dict(settings.source))
    config["kafka"] = {**config.get("kafka", {}), "bootstrap": bootstrap, "topic_prefix": prefix}
    config["worker"] = {**config.get("worker", {}), "clock": "live", "web_port": web_port}
    probe = {
        "name": PROBE_POLICY,
        "channel": PROBE_CHANNEL,
        "topic": PROBE_TOPIC,
        "metric": "first_reply",
        "target": f"{PROBE_TARGET_S}s",
        "calendar": "24x7",
        "warning_share": PROBE_WARNING_SHARE,
        "human_only": False,
    }
    config["sla_policies"] = [*config.get("sla_policies", []), probe]
    return config


def probe_event(n: int, at_ms: int, partitions: int, run_id: str) -> InteractionEvent:
    """Probe ``n``: a first customer message, its customer on partition ``n % partitions``."""
    from pipeline.core.partitioning import partition_for

    want = n % partitions
    customer = next(
        c
        for c in (f"probe-{run_id}-{n}-{i}" for i in range(100_000))
        if partition_for(c, partitions) == want
    )
    return InteractionEvent(
        event_id=f"probe-{run_id}-{n}",
        occurred_at=at_ms,
        customer_id=customer,
        channel=PROBE_CHANNEL,
        contact_id=f"probe-{run_id}-{n}",
        type="customer_message",
        actor="customer",
        producer="cxstream-bench-latency",
        topic=PROBE_TOPIC,
    )


def late_reply(probe: InteractionEvent) -> InteractionEvent:
    """An agent reply to ``probe`` dated ``LATE_REPLY_BEFORE_MS`` before its deadline."""
    return InteractionEvent(
        event_id=f"{probe.event_id}-reply",
        occurred_at=probe.occurred_at + PROBE_TARGET_S * 1000 - LATE_REPLY_BEFORE_MS,
        customer_id=probe.customer_id,
        channel=PROBE_CHANNEL,
        contact_id=probe.contact_id,
        type="agent_reply",
        actor="agent",
        producer="cxstream-bench-latency",
        topic=PROBE_TOPIC,
    )


def _read_sla_events(kafka: Any, topic: str, report: LatencyReport, stop: threading.Event) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.contract.codec import RecordCodec
    from pipeline.kafka_clients import kafka_python_options

    codec = RecordCodec("sla_event")
    consumer = KafkaConsumer(**kafka_python_options(kafka), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        while not stop.is_set():
            for batch in consumer.poll(timeout_ms=50).values():
                read_ms = time.time_ns() // 1_000_000
                for record in batch:
                    if record.value is not None:
                        report.observe(codec.decode(record.value), read_ms)
    finally:
        consumer.close()


def _consumed(web_port: int) -> float:
    """``cxstream_events_consumed_total`` summed over its series, from the worker's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cxstream_events_consumed_total")
    )


def _cli(config_file: Path, *args: str, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "--config", str(config_file), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def bench_latency(
    settings: Settings, events: int, *, seconds: float = RUN_SECONDS
) -> LatencyReport:
    """Run the latency benchmark on a fresh local broker and print its line."""
    from pipeline.tools.broker import LocalKafka

    with (
        tempfile.TemporaryDirectory(prefix="cxstream-bench-latency-") as tmp,
        LocalKafka(Path(tmp) / "kafka") as broker,
    ):
        report = measure_latency(settings, broker.start(), Path(tmp), events, seconds=seconds)
    print(report.line(skew_s=settings.worker.allowed_skew_seconds), flush=True)
    return report


def measure_latency(
    settings: Settings, bootstrap: str, workdir: Path, events: int, *, seconds: float
) -> LatencyReport:
    """Probe for ``seconds`` against the broker at ``bootstrap`` (see the module docstring).

    Topics get a fresh prefix; the worker's and the simulator's config and logs
    go to ``workdir``. Both child processes are stopped before it returns.
    """
    from pipeline.producer import EventProducer
    from pipeline.tools.broker import free_port
    from pipeline.topics import INTERACTIONS, SLA_EVENTS, ensure_topics, project_topics

    report = LatencyReport()
    skew_s = settings.worker.allowed_skew_seconds
    prefix = f"latency{uuid.uuid4().hex[:8]}"
    kafka = dataclasses.replace(settings.kafka, bootstrap=bootstrap, topic_prefix=prefix)
    ensure_topics(kafka, project_topics(kafka))
    web_port = free_port()
    config_file = workdir / "bench.yaml"
    config_file.write_text(yaml.safe_dump(bench_config(settings, bootstrap, prefix, web_port)))
    stop = threading.Event()
    reader = threading.Thread(
        target=_read_sla_events,
        args=(kafka, kafka.topic(SLA_EVENTS), report, stop),
        daemon=True,
    )
    reader.start()
    run_id = uuid.uuid4().hex[:6]
    partitions = kafka.input_partitions
    with (
        (workdir / "worker.log").open("ab") as worker_log,
        (workdir / "simulate.log").open("ab") as sim_log,
        EventProducer(kafka, kafka.topic(INTERACTIONS), settings.channels) as producer,
    ):
        worker = _cli(config_file, "worker", "--loglevel", "warn", log=worker_log)
        simulator: subprocess.Popen[bytes] | None = None
        try:
            # Ready when the worker has consumed a first (warm-up) probe.
            producer.send(probe_event(-1, time.time_ns() // 1_000_000, partitions, run_id))
            producer.flush()
            ready_by = time.monotonic() + 120
            while _consumed(web_port) < 1:
                if worker.poll() is not None or time.monotonic() > ready_by:
                    raise RuntimeError(
                        "bench latency: the worker did not start:\n"
                        + (workdir / "worker.log").read_text(errors="replace")[-3000:]
                    )
                time.sleep(0.5)
            count = min(events, int(SIM_RATE * (seconds + 30)))
            if count > 0:
                simulator = _cli(
                    config_file,
                    "simulate",
                    "--start",
                    "now",
                    "--rate",
                    str(SIM_RATE),
                    "--count",
                    str(count),
                    log=sim_log,
                )
            print(
                f"bench latency worker_ready allowed_skew_s={skew_s:g} "
                f"sim_events={count} sim_rate={SIM_RATE:g} seconds={seconds:g} "
                f"partitions={partitions}",
                flush=True,
            )
            probes = report.probes = 1  # the warm-up probe breaches too
            # (monotonic time to send, reply) of the late replies still to send.
            pending: list[tuple[float, InteractionEvent]] = []
            started = time.monotonic()
            while time.monotonic() - started < seconds or pending:
                now = time.monotonic()
                while pending and pending[0][0] <= now:
                    producer.send(pending.pop(0)[1])
                if now - started < seconds:
                    probe = probe_event(probes, time.time_ns() // 1_000_000, partitions, run_id)
                    producer.send(probe)
                    if probes % LATE_REPLY_EVERY == 0:
                        due = now + PROBE_TARGET_S + LATE_REPLY_DELAY_S
                        pending.append((due, late_reply(probe)))
                        report.late_replies += 1
                    probes += 1
                    report.probes = probes
                producer.flush()
                time.sleep(PROBE_SPACING_S)
            # The last probe's breach falls due PROBE_TARGET_S after it.
            time.sleep(PROBE_TARGET_S + skew_s + 5)
            if worker.poll() is not None:
                raise RuntimeError(f"bench latency: the worker exited {worker.returncode}")
        finally:
            if simulator is not None:
                _stop(simulator)
            _stop(worker)
            stop.set()
            reader.join(timeout=30)
    return report
