"""One side of ``cxstream bench pipeline``, run in its own process.

``--mode noop``: a Faust agent that only counts the input records (Faust's own
per-message cost, the yardstick of the first runtime). ``--mode full``: the
real stream-core role (:class:`agents.process.ProcessRole`, the batch loop of
``pipeline/runtime``) in stream-clock mode, with ``--guarantee``. Both time from
the first record received to the N-th record done (its batch committed) and
print one JSON line, with the CPU seconds this process spent meanwhile
(``cpu_s``; equal to ``seconds`` when bound by its one Python thread).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import time
import uuid

import faust
from prometheus_client import CollectorRegistry

from agents.app import build_app
from agents.worker import QuietWorker
from pipeline.metrics import Metrics
from pipeline.runtime.tuning import tune_garbage_collector
from pipeline.settings_loader import build_settings
from pipeline.topics import INTERACTIONS

#: How long the no-op agent waits to fill a batch (what the Faust worker waited).
NOOP_BATCH_SECONDS = 0.2


class _Progress:
    def __init__(self, target: int) -> None:
        self.target = target
        self.done = 0
        self.batches = 0
        self.first: float | None = None
        self.first_cpu = 0.0
        # CXSTREAM_BENCH_PROFILE=FILE writes a cProfile of the timed part to FILE.
        self.profile_file = os.environ.get("CXSTREAM_BENCH_PROFILE")
        self.profiler: cProfile.Profile | None = None

    def add(self, count: int) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.first_cpu = time.process_time()
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
            print(json.dumps(report), flush=True)
            sys.stdout.flush()
            os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("noop", "full"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument(
        "--input-topic",
        help="read this topic (default: <prefix>.interactions); outputs, "
        "state and group stay under --prefix, so runs on one input do not meet",
    )
    parser.add_argument(
        "--guarantee", choices=("at_least_once", "exactly_once"), default="at_least_once"
    )
    args = parser.parse_args()
    # As ``cxstream worker`` does (pipeline/cli.py), for both sides of the ratio.
    tune_garbage_collector()
    settings = build_settings(
        {
            "kafka": {"bootstrap": args.bootstrap, "topic_prefix": args.prefix},
            "worker": {
                "clock": "stream",
                "guarantee": args.guarantee,
                "transactional_id": f"{args.prefix}-bench",
            },
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
            async for events in stream.take_events(worker.batch_size, within=NOOP_BATCH_SECONDS):
                progress.add(len(events))
    else:
        from agents.process import ProcessRole
        from pipeline.runtime.changelog import (
            identity_changelog_topic,
            state_changelog_spec,
            state_changelog_topic,
        )
        from pipeline.topics import IDENTITY, REKEYED, ensure_topics, project_topics

        kafka = settings.kafka
        # The loop also consumes the run's identity topics (issue 16).
        specs = project_topics(kafka)
        ensure_topics(
            kafka,
            {
                state_changelog_topic(kafka): state_changelog_spec(kafka),
                identity_changelog_topic(kafka): state_changelog_spec(kafka),
                kafka.topic(IDENTITY): specs[kafka.topic(IDENTITY)],
                kafka.topic(REKEYED): specs[kafka.topic(REKEYED)],
            },
        )
        ProcessRole(
            app,
            settings,
            Metrics(CollectorRegistry()),
            on_batch=progress.add,
            input_topic=args.input_topic,
        )
    QuietWorker(app, loglevel="warn", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
