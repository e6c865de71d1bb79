"""``cxstream bench``: benchmarks that print their figures.

Targets are ratios or rates measured side by side in one run, because absolute
timings on shared 2-core machines are noisy:

* ``codec``: Avro single-object encode/decode events/s on one core.
* ``replay``: the stream core without a broker (pure logic) events/s, with the
  core this process runs (``core=compiled`` or ``core=interpreted``); the other
  core runs the same events in a subprocess (``CXSTREAM_CORE``), and
  ``speedup = compiled / interpreted`` is printed when both ran. Then
  ``cxstream replay`` end to end on the same events written as a JSON Lines
  file (decode, validate, the core, the output files), in one process and as
  configured (``replay end_to_end``).
* ``pipeline``: on the local broker, N preloaded simulator events consumed by
  (a) a no-op Faust agent and (b) the full stream-core agent, each in its own
  worker process and consumer group, same batching; prints both rates and
  ``ratio = b / a``.
* ``sink``: upserted rows/s into PostgreSQL (a local server is started when no
  ``--db`` is given).
* ``stream`` (what plain ``cxstream bench`` runs): ``pipeline``, then ``replay``.
* ``peers``: cxstream's full worker against Kafka Streams on one local broker
  (:mod:`pipeline.tools.bench_peers`).
* ``scaling``: the real ``cxstream worker`` on one broker, one worker and then two
  in one consumer group, and the ratio of their rates (:mod:`pipeline.tools.bench_scaling`).
* ``latency``: seconds from a warning's or breach's deadline to the moment its
  record is readable, live worker under real-time load (:mod:`pipeline.tools.bench_latency`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from pipeline.contract.event import InteractionEvent
from pipeline.settings import Settings


def simulated_events(
    count: int, *, seed: int = 11, customers: int | None = None
) -> list[InteractionEvent]:
    """``count`` valid simulator events in delivery order (malformed ones left out)."""
    from pipeline.tools.simulator import SimulatorConfig, generate

    config = SimulatorConfig(
        customers=customers or max(100, count // 20),
        count=int(count * 1.02) + 10,
        seed=seed,
        malformed_share=0.0,
    )
    events = [item.event for item in generate(config) if item.event is not None]
    return events[:count]


def run(
    what: str,
    settings: Settings,
    *,
    events: int,
    db: str | None,
    config: Path | None = None,
) -> int:
    """Run benchmark ``what``; ``config`` is passed on to the replay's other-core subprocess."""
    if what == "codec":
        from pipeline.contract.bench import bench_codec

        bench_codec(min(events, 100_000))
    if what == "sink":
        bench_sink_command(db, rows=events, batch=settings.sql.batch_size)
    # "stream" is the stream core's pair of targets: the ratio, then the replay.
    if what in ("pipeline", "stream"):
        bench_pipeline(settings, events)
    if what in ("replay", "stream"):
        bench_replay_both_cores(settings, events, config=config)
    if what == "replay":
        bench_replay_end_to_end(settings, events)
    if what == "peers":
        from pipeline.tools.bench_peers import bench_peers

        bench_peers(settings, events)
    if what == "scaling":
        from pipeline.tools.bench_scaling import bench_scaling

        bench_scaling(settings, events)
    if what == "latency":
        from pipeline.tools.bench_latency import bench_latency

        bench_latency(settings, events)
    return 0


def bench_replay_both_cores(
    settings: Settings, events: int, *, config: Path | None = None
) -> dict[str, float]:
    """Replay in this process's core, then in the other core in a subprocess.

    Same events (same count and seed) on both sides, one after the other, so
    the speedup is read from one run rather than across runs. The other core is
    skipped, with the reason, when it cannot run here (nothing built).
    """
    from pipeline import core_loader as native
    from pipeline.core import core_mode

    here = core_mode()
    rates = {here: _replay_in_process(settings, events)}
    other = native.INTERPRETED if here == native.COMPILED else native.COMPILED
    built = native.status()
    if other == native.COMPILED and built != native.COMPILED:
        state = native.describe(built)
        print(f"replay speedup=n/a: the compiled core is {state}; {native.BUILD_HINT}")
        return rates
    rates[other] = _replay_in_subprocess(other, events, config)
    speedup = rates[native.COMPILED] / rates[native.INTERPRETED]
    print(
        f"replay speedup={speedup:.2f} compiled_events_per_s={rates[native.COMPILED]:.0f} "
        f"interpreted_events_per_s={rates[native.INTERPRETED]:.0f}"
    )
    return rates


def bench_replay_end_to_end(settings: Settings, events: int) -> dict[int, float]:
    """``replay_file`` of ``events`` simulator events: processes -> events/s.

    One process, then the configured processes (``replay.workers``) when that is
    more than one; each prints a line. Reading the file, validating, the core
    and writing the outputs are all inside the timing; the interpreter's start
    and the imports are not.
    """
    from pipeline.contract.jsonform import write_events
    from pipeline.replay import replay_file, replay_processes

    batch = simulated_events(events)
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="cxstream-bench-replay-") as tmp:
        source = Path(tmp) / "events.jsonl"
        write_events(source, batch)
        for processes in sorted({1, replay_processes(settings, len(batch))}):
            run_settings = dataclasses.replace(
                settings, replay=dataclasses.replace(settings.replay, workers=processes)
            )
            started = time.perf_counter()
            result = replay_file(source, run_settings, Path(tmp) / f"out{processes}")
            seconds = time.perf_counter() - started
            rates[processes] = len(batch) / seconds
            print(
                f"replay end_to_end processes={processes} events={len(batch)} "
                f"rejected={result.rejected} seconds={seconds:.3f} "
                f"events_per_s={rates[processes]:.0f}",
                flush=True,
            )
    return rates


def _replay_in_process(settings: Settings, events: int) -> float:
    from pipeline.core.bench import bench_replay

    return float(bench_replay(simulated_events(events), settings)["events_per_s"])


def _replay_in_subprocess(core: str, events: int, config: Path | None) -> float:
    from pipeline.core_loader import ENV_VAR

    command = [sys.executable, "-m", "pipeline.tools.bench", "--events", str(events)]
    if config is not None:
        command += ["--config", str(config)]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, ENV_VAR: core},
    )
    report: dict | None = None
    for line in completed.stdout.splitlines():
        if line.startswith("{"):
            report = json.loads(line)
        else:
            print(line, flush=True)
    if completed.returncode != 0 or report is None:
        raise RuntimeError(
            f"replay with {ENV_VAR}={core} failed (exit {completed.returncode}):\n"
            f"{completed.stderr[-3000:]}"
        )
    return float(report["events_per_s"])


def bench_sink_command(db: str | None, *, rows: int, batch: int = 1000) -> None:
    """Sink throughput into ``db``, or into a throw-away local PostgreSQL server."""
    from pipeline.sink.bench import bench_sink
    from pipeline.tools.broker import free_port

    if db:
        bench_sink(db, rows=rows, batch=batch)
        return
    script = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "local-postgres.sh"
    with tempfile.TemporaryDirectory(prefix="cxstream-bench-pg-") as data_dir:
        # The server runs as the postgres user, which must be able to enter it.
        os.chmod(data_dir, 0o755)
        started = subprocess.run(
            ["bash", str(script), "start", data_dir, str(free_port())],
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            raise RuntimeError(f"local PostgreSQL did not start:\n{started.stderr[-2000:]}")
        url = started.stdout.strip().splitlines()[-1]
        try:
            bench_sink(url, rows=rows, batch=batch)
        finally:
            subprocess.run(
                ["bash", str(script), "stop", data_dir], check=False, capture_output=True
            )


def bench_pipeline(settings: Settings, events: int) -> dict[str, float]:
    """Preload ``events`` into a fresh topic on a local broker; time no-op vs full agent."""
    from pipeline.producer import EventProducer
    from pipeline.tools.broker import LocalKafka
    from pipeline.topics import INTERACTIONS, ensure_topics, project_topics

    with (
        tempfile.TemporaryDirectory(prefix="cxstream-bench-") as tmp,
        LocalKafka(Path(tmp) / "kafka") as kafka,
    ):
        bootstrap = kafka.start()
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        kafka_settings = dataclasses.replace(
            settings.kafka, bootstrap=bootstrap, topic_prefix=prefix
        )
        ensure_topics(kafka_settings, project_topics(kafka_settings))
        topic = kafka_settings.topic(INTERACTIONS)
        batch = simulated_events(events)
        started = time.perf_counter()
        from pipeline.progress import Progress

        with (
            EventProducer(kafka_settings, topic, settings.channels) as producer,
            Progress("bench preload", len(batch)) as progress,
        ):
            for event in batch:
                producer.send(event)
                progress.advance()
            producer.flush()
        preload_s = time.perf_counter() - started
        print(f"bench pipeline preloaded={len(batch)} events in {preload_s:.1f}s", flush=True)
        results = {}
        for mode in ("noop", "full"):
            results[mode] = _run_bench_worker(mode, bootstrap, prefix, len(batch))
            report = results[mode]
            # CPU seconds show which side is bound by its one Python thread.
            print(
                f"bench pipeline mode={mode} events={len(batch)} "
                f"seconds={report['seconds']:.2f} "
                f"events_per_s={report['events_per_s']:.0f} "
                f"batches={report['batches']} cpu_s={report['cpu_s']:.2f}",
                flush=True,
            )
    ratio = results["full"]["events_per_s"] / results["noop"]["events_per_s"]
    print(
        f"bench pipeline noop_events_per_s={results['noop']['events_per_s']:.0f} "
        f"full_events_per_s={results['full']['events_per_s']:.0f} ratio={ratio:.2f}"
    )
    return {"ratio": ratio, **{f"{k}_events_per_s": v["events_per_s"] for k, v in results.items()}}


def _run_bench_worker(
    mode: str,
    bootstrap: str,
    prefix: str,
    events: int,
    *,
    input_topic: str | None = None,
    guarantee: str = "at_least_once",
) -> dict[str, float]:
    extra = ["--input-topic", input_topic] if input_topic else []
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.bench_worker",
            "--mode",
            mode,
            "--bootstrap",
            bootstrap,
            "--prefix",
            prefix,
            "--events",
            str(events),
            "--guarantee",
            guarantee,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    # Faust's worker redirects print() to its logger, so the JSON line may come
    # out on stderr behind a log prefix.
    for line in (completed.stdout + "\n" + completed.stderr).splitlines():
        start = line.find('{"events"')
        if start >= 0:
            return dict(json.loads(line[start:].strip()))
    raise RuntimeError(
        f"bench worker {mode} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
    )


def _replay_child(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.tools.bench --events N``: one replay, its line, then its report as JSON.

    The other-core side of :func:`bench_replay_both_cores`; set up like the
    ``cxstream`` command (same settings loading and collector tuning).
    """
    from pipeline.core.bench import bench_replay
    from pipeline.runtime.tuning import tune_garbage_collector
    from pipeline.settings_loader import load_settings

    parser = argparse.ArgumentParser(prog="python -m pipeline.tools.bench")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args(argv)
    tune_garbage_collector()
    report = bench_replay(simulated_events(args.events), load_settings(args.config))
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_replay_child())
