"""``cxstream bench scaling``: one worker, then two in one consumer group, on the same events.

Capacity grows the Kafka way: more partitions, more workers in the group. This
benchmark measures how much a second worker adds on this machine. One local
broker (its own temporary directory, a free port, stopped at the end); for each
run (1 worker, then 2) a fresh topic prefix with N simulator events and one
flush event per partition (6 partitions, as ``bench peers``), then the real
``cxstream worker`` processes (stream clock). The run is timed from the moment
the group is stable with all of them (what the first one read alone before is
left out, and so are its events) until the group's committed offsets reach the
end of the input, polled every 50 ms from this process; CPU is all workers'.

Printed: one ``workers=K`` line per run (events/s, CPU µs per event, seconds),
then ``scaling ratio=<2-worker rate / 1-worker rate>`` and the machine's load
before each run (the broker and the producer share the machine's cores with
the workers: on 2 cores the ratio is bounded well below 2).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from pipeline.settings import KafkaSettings, Settings
from pipeline.tools.bench_peers import loadavg
from pipeline.tools.broker import free_port

#: A run may take this long plus a second per 200 events.
_RUN_TIMEOUT_BASE_S = 120
POLL_S = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class ScalingRun:
    workers: int
    events: int
    seconds: float
    cpu_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    def line(self) -> str:
        return (
            f"bench scaling workers={self.workers} events={self.events} "
            f"events_per_s={self.events_per_s:.0f} "
            f"cpu_us_per_event={self.cpu_s / self.events * 1e6:.0f} seconds={self.seconds:.2f}"
        )


def scaling_ratio(one: ScalingRun, two: ScalingRun) -> float:
    """The two-worker run's events/s over the one-worker run's."""
    return two.events_per_s / one.events_per_s


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its waited-for children (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class _Group:
    """The worker group's committed input offsets, read with kafka-python's admin client."""

    def __init__(self, kafka: KafkaSettings, group: str) -> None:
        from kafka import KafkaAdminClient

        from pipeline.kafka_clients import kafka_python_options

        self._admin = KafkaAdminClient(**kafka_python_options(kafka))
        self.group = group

    def committed(self, topic: str) -> dict[int, int]:
        from kafka.errors import KafkaError

        try:
            offsets = self._admin.list_group_offsets(self.group).get(self.group) or {}
        except KafkaError:  # the group's coordinator is not known yet
            return {}
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}

    def stable_members(self) -> int:
        from kafka.errors import KafkaError

        try:
            described = self._admin.describe_groups([self.group]).get(self.group) or {}
        except KafkaError:  # the group's coordinator is not known yet
            return 0
        if described.get("group_state") != "Stable":
            return 0
        return len(described.get("members") or [])

    def close(self) -> None:
        self._admin.close()


def _end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.kafka_clients import kafka_python_options

    consumer = KafkaConsumer(**kafka_python_options(kafka))
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: end for tp, end in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def _start_workers(kafka: KafkaSettings, workers: int, tmp: Path) -> list[subprocess.Popen[bytes]]:
    config = tmp / f"{kafka.topic_prefix}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap": kafka.bootstrap, "topic_prefix": kafka.topic_prefix},
                "worker": {"clock": "stream"},
            }
        ),
        encoding="utf-8",
    )
    processes = []
    for index in range(workers):
        log = (tmp / f"{kafka.topic_prefix}-worker{index}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline.cli",
                    "--config",
                    str(config),
                    "worker",
                    "--web-port",
                    str(free_port()),
                    "--loglevel",
                    "warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return processes


def run_workers(
    settings: Settings, kafka: KafkaSettings, workers: int, events: int, tmp: Path
) -> ScalingRun:
    """One run: ``workers`` worker processes in one group over N preloaded events."""
    from pipeline.runtime.changelog import (
        process_group,
        state_changelog_spec,
        state_changelog_topic,
    )
    from pipeline.tools.bench_peers import preload_input
    from pipeline.topics import ensure_topics, project_topics

    topics = dict(project_topics(kafka))
    topics[state_changelog_topic(kafka)] = state_changelog_spec(kafka)
    ensure_topics(kafka, topics)
    peer_input = preload_input(settings, kafka, events)
    ends = _end_offsets(kafka, peer_input.input_topic)
    group = _Group(kafka, process_group(kafka))
    processes = _start_workers(kafka, workers, tmp)
    try:
        deadline = time.monotonic() + 120
        while group.stable_members() < workers:
            if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers did not form a stable group")
            time.sleep(POLL_S)
        # Timed from the moment all workers are in the group: what the first
        # one read alone while the others were starting is left out.
        started = time.monotonic()
        cpu_before = sum(_process_cpu_seconds(p.pid) for p in processes)
        done_before = sum(group.committed(peer_input.input_topic).values())
        deadline = started + _RUN_TIMEOUT_BASE_S + events / 200
        while True:
            committed = group.committed(peer_input.input_topic)
            now = time.monotonic()
            if all(committed.get(p, 0) >= end for p, end in ends.items()):
                break
            if now > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(
                    f"the {workers}-worker run did not finish: {committed} of {ends}"
                )
            time.sleep(POLL_S)
        cpu = sum(_process_cpu_seconds(p.pid) for p in processes) - cpu_before
        timed_events = sum(ends.values()) - done_before
        if timed_events < sum(ends.values()) // 2:
            raise RuntimeError(
                f"only {timed_events} events were read after the group formed: use more --events"
            )
        return ScalingRun(workers, timed_events, now - started, cpu)
    finally:
        group.close()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def bench_scaling(settings: Settings, events: int) -> tuple[ScalingRun, ScalingRun]:
    """One worker, then two, on one broker; prints each run and the ratio."""
    from pipeline.core import core_mode
    from pipeline.tools.broker import LocalKafka

    print(f"bench scaling load_before={loadavg()} cpus={os.cpu_count()} core={core_mode()}")
    runs: dict[int, ScalingRun] = {}
    with (
        tempfile.TemporaryDirectory(prefix="cxstream-bench-scaling-") as tmp,
        LocalKafka(Path(tmp) / "kafka") as broker,
    ):
        bootstrap = broker.start()
        for workers in (1, 2):
            prefix = f"scale{workers}{uuid.uuid4().hex[:6]}"
            kafka = dataclasses.replace(settings.kafka, bootstrap=bootstrap, topic_prefix=prefix)
            print(f"bench scaling workers={workers} load_before={loadavg()}", flush=True)
            runs[workers] = run_workers(settings, kafka, workers, events, Path(tmp))
            print(runs[workers].line(), flush=True)
    ratio = scaling_ratio(runs[1], runs[2])
    print(f"bench scaling ratio={ratio:.2f} load_after={loadavg()}", flush=True)
    return runs[1], runs[2]


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.tools.bench_scaling [--events N]``, as ``cxstream bench scaling``."""
    import argparse

    from pipeline.settings_loader import load_settings

    parser = argparse.ArgumentParser(prog="python -m pipeline.tools.bench_scaling")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args(argv)
    bench_scaling(load_settings(args.config), args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
