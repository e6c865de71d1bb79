"""``cxstream demo``: the whole pipeline on the embedded default, until Ctrl-C.

Starts the local Kafka broker, creates the topics, starts the stream worker and
the SQL sink (SQLite under ``var/``) as child processes, feeds simulated traffic
at a steady rate, and prints a live status line read from the workers'
``/metrics`` endpoints. Ctrl-C (or SIGTERM) stops everything in reverse order.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url

from pipeline.settings import Settings
from pipeline.tools.broker import LocalKafka
from pipeline.tools.simulate_cli import DEFAULT_LAPSE_SECONDS
from pipeline.topics import ensure_topics, project_topics

STATUS_EVERY_SECONDS = 2.0
PR_SET_PDEATHSIG = 1

# The demo's traffic: a time-lapse whose event time runs DEFAULT_SPEEDUP times
# faster than the wall clock for DEFAULT_LAPSE_SECONDS (30 minutes of demo show
# 15 hours of contacts), starting that much in the past so that it never runs
# ahead of the wall clock (the worker dead-letters events more than
# limits.max_future_skew ahead); after that, traffic follows the wall clock.
# ``--lapse`` sets how long the fast part lasts (DEFAULT_LAPSE_SECONDS).
DEFAULT_RATE = 40.0
# The bank profile's population is 50,000 (pipeline.tools.simulator.BANK_PROFILE); the
# time-lapse packs 15 hours of a busy day into 30 minutes, so a larger population
# keeps repeat contacts as rare as a bank's.
DEFAULT_CUSTOMERS = 200_000
# The live status line stays within an 80-column terminal (one column spare so
# the cursor does not wrap).
STATUS_WIDTH = 79
DEFAULT_SPEEDUP = 30.0

EXAMPLE_QUERIES = """\
  -- first-contact resolution by journey start channel, today
  SELECT first_channel,
         ROUND(100.0 * SUM(first_contact_resolved) / COUNT(*), 1) AS fcr_percent,
         COUNT(*) AS journeys
    FROM sessions
   WHERE status = 'final' AND started_at >= date('now')
   GROUP BY first_channel ORDER BY fcr_percent;

  -- SLA breaches per hour and channel
  SELECT strftime('%Y-%m-%d %H:00', fired_at) AS hour, channel, COUNT(*) AS breaches
    FROM sla_events WHERE kind = 'breach'
   GROUP BY hour, channel ORDER BY hour;

  -- where unresolved chatbot conversations go next
  SELECT to_channel, COUNT(*) AS failures, ROUND(AVG(gap_seconds) / 60, 1) AS avg_gap_min
    FROM channel_switch_failures WHERE from_channel = 'chat'
   GROUP BY to_channel ORDER BY failures DESC;
"""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(args: Sequence[str], log_file: Path) -> subprocess.Popen[bytes]:
    log = log_file.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )


def scrape(port: int) -> dict[str, float]:
    """Sum every sample of a /metrics page by sample name (labels folded)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1.5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def short_number(value: float) -> str:
    """Five characters at most below a trillion: 999, 12.3k, 123k, 1.23M, 45.6G."""
    number = int(value)
    if abs(number) < 1000:
        return str(number)
    for unit, scale in (("k", 1e3), ("M", 1e6)):
        if abs(number / scale) < 999.5:
            return f"{number / scale:.3g}{unit}"
    return f"{number / 1e9:.3g}G"


# What the live line shows, most important first: when the figures grow too wide
# for STATUS_WIDTH, the last ones are left off.
STATUS_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("events", "worker", "cxstream_events_consumed_total"),
    ("open", "worker", "cxstream_open_sessions"),
    ("closed", "worker", "cxstream_sessions_closed_total"),
    ("breaches", "worker", "cxstream_sla_breaches_total"),
    ("warnings", "worker", "cxstream_sla_warnings_total"),
    ("switch_fail", "worker", "cxstream_channel_switch_failures_total"),
    ("lag", "worker", "cxstream_consumer_lag"),
    ("dlq", "worker", "cxstream_dead_letters_total"),
    ("late", "worker", "cxstream_late_events_total"),
    ("sql_rows", "sink", "cxstream_sink_rows_total"),
)


def status_line(
    worker: dict[str, float], sink: dict[str, float], *, prefix: str = "", width: int = STATUS_WIDTH
) -> str:
    """``prefix`` and the figures as ``name=value``, never wider than ``width``."""
    sources = {"worker": worker, "sink": sink}
    line = prefix.rstrip()
    for label, source, metric in STATUS_FIELDS:
        part = f"{label}={short_number(sources[source].get(metric, 0))}"
        candidate = f"{line} {part}" if line else part
        if len(candidate) > width:
            break
        line = candidate
    return line


def process_commands(
    *,
    config: Path | None,
    bootstrap: str,
    prefix: str,
    sql_url: str,
    web_port: int,
    sink_port: int,
    rate: float,
    customers: int,
    seed: int,
    speedup: float,
    lapse_seconds: float,
) -> dict[str, list[str]]:
    """The ``cxstream`` command line (without the program) of each process the demo starts.

    Every process gets the demo's config file, so a setting given there (a
    channel, a policy, security) holds for all of them; the broker, the topic
    prefix and the database the demo chose are given explicitly on top.
    """
    common = ["--bootstrap", bootstrap, "--prefix", prefix]
    if config is not None:
        common = ["--config", str(config.resolve()), *common]
    return {
        "worker": [
            "worker",
            *common,
            "--web-port",
            str(web_port),
            "--clock",
            worker_clock(speedup),
        ],
        "sink": ["sink", *common, "--db", sql_url, "--web-port", str(sink_port)],
        "simulator": simulate_arguments(
            common,
            rate=rate,
            customers=customers,
            seed=seed,
            speedup=speedup,
            lapse_seconds=lapse_seconds,
        ),
    }


def fresh_database(url: str, *, reuse: bool, now: datetime) -> str:
    """Make sure the demo starts on a database of its own; returns what was done, to print.

    A SQLite file of an earlier run is moved aside (``cxstream-<its time>.db``, with
    its ``-wal``/``-shm`` files) so its rows are kept but never mixed with this
    run's; another database that holds rows is refused. ``reuse`` keeps
    either as it is.
    """
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if reuse:
        return f"reusing {shown} (--reuse-db): rows of earlier runs stay in it"
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(str(parsed.database))
        if not path.exists():
            return f"{shown} (new)"
        stamp = datetime.fromtimestamp(path.stat().st_mtime, now.tzinfo).strftime("%Y%m%d-%H%M%S")
        aside = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{path}{suffix}")
            if part.exists():
                part.rename(Path(f"{aside}{suffix}"))
        return f"{shown} (new; the earlier run's file is now {aside}; --reuse-db keeps it)"
    from pipeline.replay_sql import refuse_mixed_runs

    refuse_mixed_runs(url, None, hint="give the demo a new database with --db, or --reuse-db")
    return f"{shown} (empty)"


@contextlib.contextmanager
def _stopping(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def worker_clock(speedup: float) -> str:
    """The worker's clock mode for a demo at ``speedup``.

    A time-lapse replays the past at speed, so the worker must keep time by the
    events (``stream``); on the ``live`` clock, wall time minus a few seconds,
    the time-lapse's events would all be late.
    """
    return "stream" if speedup > 1 else "live"


def simulate_arguments(
    common: Sequence[str],
    *,
    rate: float,
    customers: int,
    seed: int,
    speedup: float,
    lapse_seconds: float,
) -> list[str]:
    """The ``cxstream simulate`` command line the demo runs (without the program)."""
    return [
        "simulate",
        *common,
        "--start",
        "now",
        "--rate",
        str(rate),
        "--customers",
        str(customers),
        "--seed",
        str(seed),
        "--count",
        str(10**9),
        "--speedup",
        str(speedup),
        "--lapse",
        str(lapse_seconds),
    ]


def run_demo(
    settings: Settings,
    *,
    config: Path | None = None,
    reuse_db: bool = False,
    rate: float = DEFAULT_RATE,
    customers: int = DEFAULT_CUSTOMERS,
    seed: int = 7,
    speedup: float = DEFAULT_SPEEDUP,
    lapse_seconds: float = DEFAULT_LAPSE_SECONDS,
) -> int:
    var = Path("var").resolve()
    var.mkdir(exist_ok=True)
    logs = var / "logs"
    logs.mkdir(exist_ok=True)
    sql_url = settings.sql.url
    web_port = settings.worker.web_port
    sink_port = web_port + 1
    database = fresh_database(sql_url, reuse=reuse_db, now=datetime.now().astimezone())

    # SIGTERM behaves like Ctrl-C so the finally blocks stop everything.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with LocalKafka(var / "kafka") as kafka:
        bootstrap = kafka.start()
        print(f"kafka      ready at {bootstrap} (log: {kafka.log_file})")
        kafka_settings = dataclasses.replace(settings.kafka, bootstrap=bootstrap)
        ensure_topics(kafka_settings, project_topics(kafka_settings))
        commands = process_commands(
            config=config,
            bootstrap=bootstrap,
            prefix=settings.kafka.topic_prefix,
            sql_url=sql_url,
            web_port=web_port,
            sink_port=sink_port,
            rate=rate,
            customers=customers,
            seed=seed,
            speedup=speedup,
            lapse_seconds=lapse_seconds,
        )
        processes = [
            _spawn(commands["worker"], logs / "worker.log"),
            _spawn(commands["sink"], logs / "sink.log"),
            _spawn(commands["simulator"], logs / "simulate.log"),
        ]
        with _stopping(processes):
            print(f"worker     http://127.0.0.1:{web_port}/metrics   (log: {logs / 'worker.log'})")
            print(f"sink       http://127.0.0.1:{sink_port}/metrics   (log: {logs / 'sink.log'})")
            simulate_log = logs / "simulate.log"
            print(
                f"simulator  {rate:g} events/s, {customers} customers, time-lapse x{speedup:g}"
                f" for {lapse_seconds / 60:g} min from {(speedup - 1) * lapse_seconds / 3600:g} h"
                f" ago, then live (log: {simulate_log})"
            )
            print(f"SQL        {database}")
            print("Try, e.g. with the sqlite3 shell on that file:")
            print(EXAMPLE_QUERIES)
            print("Live (Ctrl-C stops everything):")
            try:
                while True:
                    time.sleep(STATUS_EVERY_SECONDS)
                    for process, name in zip(
                        processes, ("worker", "sink", "simulator"), strict=True
                    ):
                        if process.poll() is not None:
                            print(f"\n{name} exited with {process.returncode}; see {logs}/")
                            return 1
                    line = status_line(
                        scrape(web_port), scrape(sink_port), prefix=time.strftime("%H:%M:%S")
                    )
                    # Pad over a longer previous line; \r rewrites the same row.
                    print(f"\r{line:<{STATUS_WIDTH}}", end="", flush=True)
            except KeyboardInterrupt:
                print("\nstopping ...")
    print("stopped.")
    return 0
