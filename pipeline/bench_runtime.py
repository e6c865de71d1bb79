"""``cxstream bench runtime``: the runtime options of issue 14, measured side by side.

One local broker and one preloaded input, as ``cxstream bench peers`` makes them
(:func:`pipeline.bench_peers.preload_input`: N simulator events, then one flush
event per partition), read in turn by each option, each in its own consumer
group, with fresh state and its own output topics:

* ``faust_worker``: today's worker, exactly as ``bench peers`` runs it (the Faust
  process and the stream core's child process);
* ``hotpath_alos``: :mod:`pipeline.hotpath` hosted in a Faust app (lifecycle,
  timer), the input read per batch by an aiokafka consumer group, the outputs
  and the state (a compacted changelog written by the loop) sent by one aiokafka
  producer, one commit per batch: outputs acknowledged -> state -> offsets;
* ``hotpath_eos``: the same with a Kafka transaction per batch (outputs, state
  and offsets atomically);
* ``hotpath_alos_bare``: ``hotpath_alos`` on a bare asyncio loop, without Faust:
  what hosting in Faust costs;
* ``kstreams_eos``: the Kafka Streams peer with ``exactly_once_v2``, the yardstick.

Every option is timed like ``bench peers`` times cxstream: from its first batch
written to the batch holding the N-th record written (outputs and state
acknowledged, offsets committed); CPU is that of all its processes meanwhile.
Printed per option: ``engine=... events_per_s cpu_us_per_event sessions_out``
and ``ratio_vs_kstreams_eos``; at the end ``same_sessions``: whether every
cxstream option emitted exactly the sessions today's worker did.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.bench_peers import (
    KSTREAMS_EOS,
    Bounds,
    EngineResult,
    parse_report,
)
from pipeline.settings import KafkaSettings, Settings

FAUST_WORKER = "faust_worker"
HOTPATH_ALOS = "hotpath_alos"
HOTPATH_EOS = "hotpath_eos"
HOTPATH_ALOS_BARE = "hotpath_alos_bare"

#: option -> (guarantee, host) of the hot-path child.
HOTPATH_OPTIONS: Mapping[str, tuple[str, str]] = {
    HOTPATH_ALOS: ("at_least_once", "faust"),
    HOTPATH_EOS: ("exactly_once", "faust"),
    HOTPATH_ALOS_BARE: ("at_least_once", "asyncio"),
}

_CHILD_TIMEOUT_S = 1800


def changelog_topic(kafka: KafkaSettings) -> str:
    """The hot path's state changelog under ``kafka``'s prefix."""
    return f"{kafka.topic_prefix}.hotpath-state-changelog"


def hotpath_group(kafka: KafkaSettings) -> str:
    return f"cxstream-{kafka.topic_prefix}-hotpath"


def ratio_vs_kstreams_eos(results: Mapping[str, EngineResult]) -> dict[str, float]:
    """Each option's events/s over Kafka Streams exactly-once's from the same run."""
    if KSTREAMS_EOS not in results:
        return {}
    yardstick = results[KSTREAMS_EOS].events_per_s
    return {
        name: result.events_per_s / yardstick
        for name, result in results.items()
        if name != KSTREAMS_EOS
    }


def summary_line(results: Mapping[str, EngineResult], sessions: Mapping[str, set[Bounds]]) -> str:
    """The closing line: every option's ratio and whether its sessions equal the worker's."""
    parts = [f"ratio_{name}={value:.2f}" for name, value in ratio_vs_kstreams_eos(results).items()]
    reference = sessions.get(FAUST_WORKER)
    if reference is not None:
        for name, bounds in sessions.items():
            if name not in (FAUST_WORKER, KSTREAMS_EOS):
                parts.append(f"same_sessions_{name}={'yes' if bounds == reference else 'no'}")
    return "bench runtime " + " ".join(parts)


# -- the hot-path child ---------------------------------------------------------


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    return time.process_time()


class Timing:
    """From the first batch written to the one holding the N-th record; then ``done``."""

    def __init__(self, target: int, done: Callable[[dict[str, float]], None]) -> None:
        self.target = target
        self.count = 0
        self.batches = 0
        self.first: float | None = None
        self.first_cpu = 0.0
        self._done = done
        self.report: dict[str, float] | None = None

    def add(self, records: int) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.first_cpu = process_cpu_seconds()
        self.count += records
        self.batches += 1
        if self.report is None and self.count >= self.target:
            seconds = time.perf_counter() - self.first
            self.report = {
                "events": self.count,
                "seconds": seconds,
                "events_per_s": self.count / seconds,
                "cpu_s": process_cpu_seconds() - self.first_cpu,
                "batches": self.batches,
            }
            self._done(self.report)


def _child_settings(
    bootstrap: str, prefix: str, *, batch_size: int | None = None, control_records: bool = False
) -> Settings:
    from pipeline.settings import build_settings

    # As the bench worker runs: stream clock, everything else the defaults
    # (the restart test ends its input with end-of-input control records).
    worker: dict[str, Any] = {"clock": "stream", "control_records": control_records}
    if batch_size is not None:
        worker["batch_size"] = batch_size
    return build_settings(
        {"kafka": {"bootstrap": bootstrap, "topic_prefix": prefix}, "worker": worker}
    )


def _child_config(settings: Settings, input_topic: str, guarantee: str) -> Any:
    from pipeline.hotpath.config import HotPathConfig

    group = hotpath_group(settings.kafka)
    return HotPathConfig(
        input_topic=input_topic,
        group_id=group,
        changelog_topic=changelog_topic(settings.kafka),
        guarantee="exactly_once" if guarantee == "exactly_once" else "at_least_once",
        transactional_id=f"{group}-0",
        max_batch=settings.worker.batch_size,
    )


def run_child(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.bench_runtime child ...``: one hot-path option, one JSON line.

    ``--events`` 0 runs until stopped (SIGTERM, or SIGKILL in the restart test).
    """
    from prometheus_client import CollectorRegistry

    from pipeline.metrics import Metrics
    from pipeline.runtime import tune_garbage_collector

    parser = argparse.ArgumentParser(prog="python -m pipeline.bench_runtime child")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--prefix", required=True, help="topic prefix of outputs and state")
    parser.add_argument("--guarantee", choices=("at_least_once", "exactly_once"), required=True)
    parser.add_argument("--host", choices=("faust", "asyncio"), default="faust")
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--control-records", action="store_true")
    args = parser.parse_args(argv)
    tune_garbage_collector()
    settings = _child_settings(
        args.bootstrap,
        args.prefix,
        batch_size=args.batch_size,
        control_records=args.control_records,
    )
    config = _child_config(settings, args.input_topic, args.guarantee)
    metrics = Metrics(CollectorRegistry())

    def report(figures: dict[str, float]) -> None:
        print(json.dumps(figures), flush=True)
        if args.events:
            # Measured: leave at once, like the bench worker (a Faust worker's
            # shutdown takes seconds and measures nothing).
            os._exit(0)

    timing = Timing(args.events or sys.maxsize, report)
    if args.host == "faust":
        from pipeline.hotpath.faust_host import run_in_faust

        run_in_faust(settings, config, metrics=metrics, on_batch=timing.add)
    else:
        asyncio.run(_run_bare(settings, config, metrics, timing.add))
    return 0


async def _run_bare(
    settings: Settings, config: Any, metrics: Any, on_batch: Callable[[int], None]
) -> None:
    from pipeline.hotpath.loop import HotPath

    hot_path = HotPath(settings, config, metrics=metrics, on_batch=on_batch)
    await hot_path.start()
    try:
        await hot_path.run()
    finally:
        await hot_path.close()


def ensure_hotpath_topics(kafka: KafkaSettings) -> None:
    """Output topics kept forever and the compacted state changelog under ``kafka``'s prefix."""
    from pipeline.bench_peers import forever_specs
    from pipeline.topics import TopicSpec, ensure_topics

    specs = forever_specs(kafka)
    specs[changelog_topic(kafka)] = TopicSpec(
        partitions=kafka.input_partitions, retention_ms=-1, cleanup_policy="compact"
    )
    ensure_topics(kafka, specs)


def _run_hotpath(
    kafka: KafkaSettings, input_topic: str, total: int, guarantee: str, host: str
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "pipeline.bench_runtime",
        "child",
        "--bootstrap",
        kafka.bootstrap,
        "--input-topic",
        input_topic,
        "--prefix",
        kafka.topic_prefix,
        "--guarantee",
        guarantee,
        "--host",
        host,
        "--events",
        str(total),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S, check=False
    )
    try:
        return parse_report(done.stdout + "\n" + done.stderr)
    except ValueError:
        raise RuntimeError(
            f"hot-path option {guarantee}/{host} failed (exit {done.returncode}):\n"
            f"{done.stderr[-3000:]}"
        ) from None


# -- the harness ------------------------------------------------------------------


def bench_runtime(settings: Settings, events: int) -> dict[str, EngineResult]:
    """Every option on one broker and one input; prints each line and the summary."""
    from pipeline.bench import _run_bench_worker
    from pipeline.bench_peers import (
        _loadavg,
        build_peer,
        cxstream_sessions,
        preload_input,
        run_kstreams,
    )
    from pipeline.broker import LocalKafka
    from pipeline.core import core_mode

    jar = build_peer()
    print(f"bench runtime load_before={_loadavg()} cpus={os.cpu_count()}", flush=True)
    results: dict[str, EngineResult] = {}
    sessions: dict[str, set[Bounds]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="cxstream-bench-runtime-") as tmp,
        LocalKafka(Path(tmp) / "kafka") as broker,
    ):
        bootstrap = broker.start()
        prefix = f"rt{uuid.uuid4().hex[:8]}"
        kafka = dataclasses.replace(settings.kafka, bootstrap=bootstrap, topic_prefix=prefix)
        peer_input = preload_input(settings, kafka, events)
        print(
            f"bench runtime preloaded events={peer_input.events} total={peer_input.total} "
            f"customers={peer_input.customers} partitions={kafka.input_partitions} "
            f"cxstream_core={core_mode()}",
            flush=True,
        )

        def record(name: str, result: EngineResult, bounds: set[Bounds]) -> None:
            results[name], sessions[name] = result, bounds
            ratio = ratio_vs_kstreams_eos(results).get(name)
            suffix = f" ratio_vs_{KSTREAMS_EOS}={ratio:.2f}" if ratio is not None else ""
            print(f"{result.line()}{suffix} load_after={_loadavg()}", flush=True)

        print(f"bench runtime engine={KSTREAMS_EOS} load_before={_loadavg()}", flush=True)
        result, bounds = run_kstreams(jar, kafka, peer_input, KSTREAMS_EOS)
        record(KSTREAMS_EOS, result, bounds)

        print(f"bench runtime engine={FAUST_WORKER} load_before={_loadavg()}", flush=True)
        report = _run_bench_worker("full", bootstrap, prefix, peer_input.total)
        worker = EngineResult(
            FAUST_WORKER,
            events=int(report["events"]),
            seconds=float(report["seconds"]),
            cpu_s=float(report["cpu_s"]) + float(report.get("core_cpu_s", 0.0)),
            sessions_out=0,
        )
        bounds = cxstream_sessions(kafka)
        record(FAUST_WORKER, dataclasses.replace(worker, sessions_out=len(bounds)), bounds)

        for name, (guarantee, host) in HOTPATH_OPTIONS.items():
            option_kafka = dataclasses.replace(kafka, topic_prefix=f"{prefix}{name}")
            ensure_hotpath_topics(option_kafka)
            print(f"bench runtime engine={name} load_before={_loadavg()}", flush=True)
            report = _run_hotpath(
                option_kafka, peer_input.input_topic, peer_input.total, guarantee, host
            )
            bounds = cxstream_sessions(option_kafka)
            result = EngineResult(
                name,
                events=int(report["events"]),
                seconds=float(report["seconds"]),
                cpu_s=float(report["cpu_s"]),
                sessions_out=len(bounds),
            )
            record(name, result, bounds)
    print(summary_line(results, sessions) + f" load_after={_loadavg()}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.bench_runtime [--events N]``, or ``... child ...`` (one option)."""
    from pipeline.settings import load_settings

    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["child"]:
        return run_child(arguments[1:])
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench_runtime")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args(arguments)
    bench_runtime(load_settings(args.config), args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
