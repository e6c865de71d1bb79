"""One side of ``cxstream bench pipeline``, run in its own process.

``--mode noop``: a Faust agent that only counts the input records, batched
exactly like the real agent. ``--mode full``: the real stream-core agent
(:class:`agents.process.ProcessRole`) in stream-clock mode. Both time from the
first record received to the N-th record done and print one JSON line, with
the CPU seconds this process spent meanwhile (``cpu_s``; equal to ``seconds``
when the side is bound by its one Python thread) and, for the full agent with
its stream core in a child process, the child's (``core_cpu_s``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import faust
from prometheus_client import CollectorRegistry

from agents.app import build_app
from agents.worker import QuietWorker
from pipeline.metrics import Metrics
from pipeline.runtime.tuning import tune_garbage_collector
from pipeline.settings import build_settings
from pipeline.topics import INTERACTIONS


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Progress:
    def __init__(self, target: int) -> None:
        self.target = target
        self.done = 0
        self.batches = 0
        self.first: float | None = None
        self.first_cpu = 0.0
        #: The stream core's child process, when there is one.
        self.core_pid: Callable[[], int | None] = lambda: None
        self.first_core_cpu = 0.0
        # CXSTREAM_BENCH_PROFILE=FILE writes a cProfile of the timed part to FILE.
        self.profile_file = os.environ.get("CXSTREAM_BENCH_PROFILE")
        self.profiler: cProfile.Profile | None = None

    def add(self, count: int) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.first_cpu = time.process_time()
            core_pid = self.core_pid()
            if core_pid is not None:
                self.first_core_cpu = _process_cpu_seconds(core_pid)
            if self.profile_file:
                self.profiler = cProfile.Profile()
                self.profiler.enable()
        self.done += count
        self.batches += 1
        if self.done >= self.target:
            seconds = time.perf_counter() - self.first
            if self.profiler is not None and self.profile_file:
                self.profiler.disable()
                self.profiler.dump_stats(self.profile_file)
            report = {
                "events": self.done,
                "seconds": seconds,
                "events_per_s": self.done / seconds,
                "cpu_s": time.process_time() - self.first_cpu,
                "batches": self.batches,
            }
            core_pid = self.core_pid()
            if core_pid is not None:
                report["core_cpu_s"] = _process_cpu_seconds(core_pid) - self.first_core_cpu
            print(json.dumps(report), flush=True)
            sys.stdout.flush()
            os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("noop", "full"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--events", type=int, required=True)
    args = parser.parse_args()
    # As ``cxstream worker`` does (pipeline/cli.py), for both sides of the ratio.
    tune_garbage_collector()
    settings = build_settings(
        {
            "kafka": {"bootstrap": args.bootstrap, "topic_prefix": args.prefix},
            "worker": {"clock": "stream"},
        }
    )
    progress = _Progress(args.events)
    role = f"bench-{args.mode}-{uuid.uuid4().hex[:6]}"
    app = build_app(settings, role=role, web_enabled=False)
    if args.mode == "noop":
        topic = app.topic(
            settings.kafka.topic(INTERACTIONS), key_serializer="raw", value_serializer="raw"
        )

        @app.agent(topic, name="noop")
        async def noop(stream: faust.StreamT) -> None:
            worker = settings.worker
            async for events in stream.take_events(worker.batch_size, within=worker.batch_seconds):
                progress.add(len(events))
    else:
        from agents.process import ProcessRole

        ProcessRole(app, settings, Metrics(CollectorRegistry()), on_batch=progress.add)
    QuietWorker(app, loglevel="warn", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
