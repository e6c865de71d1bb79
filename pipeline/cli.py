"""The ``cxstream`` command.

Each subcommand parses its arguments here and calls one function that does the
work; heavy imports (faust, kafka, SQLAlchemy) happen inside the subcommand so
``cxstream --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline import __version__
from pipeline.errors import ConfigError, CxstreamError, InputFileError
from pipeline.runtime.tuning import tune_garbage_collector
from pipeline.settings import Settings
from pipeline.settings_loader import load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict = {}
    if getattr(args, "bootstrap", None):
        overrides.setdefault("kafka", {})["bootstrap"] = args.bootstrap
    if getattr(args, "prefix", None):
        overrides.setdefault("kafka", {})["topic_prefix"] = args.prefix
    if getattr(args, "db", None):
        overrides.setdefault("sql", {})["url"] = args.db
    if getattr(args, "web_port", None):
        overrides.setdefault("worker", {})["web_port"] = args.web_port
    if getattr(args, "clock", None):
        overrides.setdefault("worker", {})["clock"] = args.clock
    return load_settings(args.config, overrides=overrides)


def _input_file(path: Path) -> Path:
    """``path`` if it is a readable file; else one clear error, before anything connects."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, not a file")
    return path


def cmd_broker(args: argparse.Namespace) -> int:
    from pipeline.tools.broker import broker_command

    return broker_command(args.data_dir, args.port, args.fetch_only)


def cmd_topics(args: argparse.Namespace) -> int:
    from pipeline.topics import ensure_topics, project_topics

    settings = _settings(args)
    created = ensure_topics(settings.kafka, project_topics(settings.kafka))
    print(f"topics ready created={len(created)} {' '.join(created)}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from agents.worker import run_worker

    run_worker(_settings(args), "process", loglevel=args.loglevel)
    return 0


def cmd_sink(args: argparse.Namespace) -> int:
    from agents.worker import run_worker

    settings = _settings(args)
    port = args.web_port or settings.worker.web_port + 1
    run_worker(settings, "sink", loglevel=args.loglevel, web_port=port)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from pipeline.tools.simulate_cli import simulate_command

    settings = _settings(args)
    return simulate_command(
        settings=settings,
        customers=args.customers,
        count=args.count,
        seed=args.seed,
        start=args.start,
        rate=args.rate,
        output=args.output,
        to_kafka=args.output is None,
        bootstrap=settings.kafka.bootstrap,
        speedup=args.speedup,
        lapse_seconds=args.lapse,
        identity_share=args.identity_share,
    )


def cmd_produce(args: argparse.Namespace) -> int:
    from pipeline.control import send_end_of_input
    from pipeline.producer import EventProducer, produce_file
    from pipeline.topics import INTERACTIONS

    _input_file(args.file)
    settings = _settings(args)
    topic = settings.kafka.topic(INTERACTIONS)
    with EventProducer(settings.kafka, topic, settings.channels) as producer:
        report = produce_file(args.file, producer)
        producer.flush()
    if args.end_of_input:
        send_end_of_input(settings.kafka, topic, input_end_ms=report.input_end_ms)
    for line_no, error in report.rejected:
        print(f"rejected line {line_no}: {error}", file=sys.stderr)
    print(f"produce sent={report.sent} rejected={len(report.rejected)} topic={topic}")
    return 0 if not report.rejected else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.replay import REJECTED_FILE, replay_file

    settings = _settings(args)
    path = _input_file(args.file)
    if args.run and not args.db:
        raise ConfigError("--run names a run in a database: give --db too")
    if args.db:
        # Only with --db: SQLAlchemy and the models take about a second to import.
        from pipeline.replay_sql import refuse_mixed_runs, run_settings

        settings = run_settings(settings, args.run)
        # Checked before the replay, so a refusal costs nothing.
        refuse_mixed_runs(settings.sql.url, args.run)
    # The SQL path writes the records themselves, so only then are they kept.
    result = replay_file(path, settings, args.out, keep_records=bool(args.db))
    if args.db:
        from pipeline.replay_sql import write_to_sql

        rows = write_to_sql(result, settings)
        print(f"replay sql url={args.db.split('://')[0]} rows={rows}")
        if args.run:
            print(f"replay run={args.run} url={settings.sql.url}")
    if result.rejected:
        print(
            f"cxstream: {result.rejected} event(s) rejected; see {args.out / REJECTED_FILE}",
            file=sys.stderr,
        )
        if not args.allow_rejected:
            return 1
    return 0


def cmd_schema_check(args: argparse.Namespace) -> int:
    from pipeline.contract.compat import compat_command

    return compat_command(args.schemas_dir)


def cmd_bench(args: argparse.Namespace) -> int:
    from pipeline.tools import bench

    settings = _settings(args)
    return bench.run(args.what, settings, events=args.events, db=args.db, config=args.config)


def cmd_native(args: argparse.Namespace) -> int:
    from pipeline.tools.native import native_command

    return native_command(args.native_command, force=getattr(args, "force", False))


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.tools.demo import run_demo

    return run_demo(
        _settings(args),
        config=args.config,
        reuse_db=args.reuse_db,
        rate=args.rate,
        customers=args.customers,
        seed=args.seed,
        speedup=args.speedup,
        lapse_seconds=args.lapse,
    )


def cmd_wall(args: argparse.Namespace) -> int:
    from pipeline.wall import wall_config
    from pipeline.wall_server import serve_wall
    from pipeline.wall_windows import parse_shifts

    settings = _settings(args)
    try:
        lang = args.lang or settings.ops.wall_language
        config = wall_config(settings, lang=lang, shifts=parse_shifts(args.shifts))
    except ValueError as exc:
        raise ConfigError(f"wall: {exc}") from exc
    kafka = None if args.no_kafka else settings.kafka
    prometheus = args.prometheus or settings.ops.prometheus_url
    return serve_wall(settings.sql.url, config, kafka, args.bind, args.port, prometheus)


def cmd_ops(args: argparse.Namespace) -> int:
    from pipeline.ops_config import ops_command

    return ops_command(args.ops_command, _settings(args), args.output, args.webhook_base)


CONFIG_HELP = "YAML config file merged over the defaults (see docs/ops.md)"


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, except the empty ones (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


class _Subcommands:
    """Adds subcommands that show their defaults and take ``--config`` too.

    ``--config`` is accepted before the subcommand and after it; after it, its
    default is SUPPRESS so a value given before is kept when none is given after.
    """

    def __init__(self, action: argparse._SubParsersAction) -> None:
        self._action = action

    def add_parser(self, name: str, *, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._action.add_parser(
            name,
            formatter_class=_HelpWithDefaults,
            help=help,
        )
        parser.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=CONFIG_HELP)
        return parser


# pipeline.tools.simulator.BANK_PROFILE["customers"] and pipeline.tools.demo.DEFAULT_CUSTOMERS,
# written out for the same reason as LAPSE_DEFAULT_SECONDS (a test keeps them equal).
SIMULATE_CUSTOMERS_DEFAULT = 50_000
DEMO_CUSTOMERS_DEFAULT = 200_000

# pipeline.tools.simulate_cli.DEFAULT_LAPSE_SECONDS, written out so that parsing the
# command line does not import the simulator (a test keeps the two equal).
LAPSE_DEFAULT_SECONDS = 1800.0
LAPSE_HELP = (
    "time-lapse: wall seconds the fast part lasts; event time starts "
    "(speedup - 1) x this in the past and reaches the wall clock when it ends"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxstream",
        description="Omnichannel customer-interaction streaming: sessions, SLA clocks, "
        "channel-switch failures.",
        formatter_class=_HelpWithDefaults,
    )
    parser.add_argument("--version", action="version", version=f"cxstream {__version__}")
    parser.add_argument("--config", type=Path, help=CONFIG_HELP)
    sub = _Subcommands(parser.add_subparsers(dest="command", required=True))

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--bootstrap", help="Kafka bootstrap servers (overrides the config)")
        p.add_argument("--prefix", help="topic prefix (overrides the config)")
        return p

    p = sub.add_parser("broker", help="fetch and run the local single-node Kafka broker")
    p.add_argument("--data-dir", type=Path, help="broker data dir (default: a fresh temp dir)")
    p.add_argument("--port", type=int, help="listener port (default: a free port)")
    p.add_argument("--fetch-only", action="store_true", help="only fetch the Kafka artifacts")
    p.set_defaults(func=cmd_broker)

    p = common(sub.add_parser("topics", help="create the project's topics (idempotent)"))
    p.set_defaults(func=cmd_topics)

    for name, func, helptext in (
        ("worker", cmd_worker, "run the stream-core worker"),
        ("sink", cmd_sink, "run the SQL sink worker"),
    ):
        p = common(sub.add_parser(name, help=helptext))
        p.add_argument("--db", help="SQLAlchemy URL (overrides sql.url)")
        p.add_argument("--web-port", type=int, help="port of /metrics and the ops page")
        p.add_argument("--clock", choices=("live", "stream"), help="clock mode")
        p.add_argument(
            "--loglevel",
            default="info",
            choices=("debug", "info", "warn", "error"),
            help="log level",
        )
        p.set_defaults(func=func)

    p = common(sub.add_parser("simulate", help="generate omnichannel traffic"))
    p.add_argument(
        "--customers",
        type=int,
        default=SIMULATE_CUSTOMERS_DEFAULT,
        help="simulated customers (the bank profile's population)",
    )
    p.add_argument("--count", type=int, default=10_000, help="events to emit")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same events)")
    p.add_argument("--start", default=None, help="ISO-8601 start of event time, or 'now'")
    p.add_argument(
        "--rate", type=float, default=None, help="events/s (default: as fast as possible)"
    )
    p.add_argument("--output", type=Path, help="write JSON Lines here instead of to Kafka")
    p.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="with --start now: event time runs this many times faster than the wall clock",
    )
    p.add_argument("--lapse", type=float, default=LAPSE_DEFAULT_SECONDS, help=LAPSE_HELP)
    p.add_argument(
        "--identity-share",
        type=float,
        default=0.0,
        help="share of call/chat journeys that start anonymous until identified (issue 16;"
        " the worker and replay process them)",
    )
    p.set_defaults(func=cmd_simulate)

    p = common(sub.add_parser("produce", help="send a JSON Lines file of events to Kafka"))
    p.add_argument("file", type=Path, help="JSON Lines file of events")
    p.add_argument(
        "--end-of-input",
        action="store_true",
        help="then mark the end of input on every partition (backfills, tests)",
    )
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("replay", help="process a JSON Lines file offline (the reference)")
    p.add_argument("file", type=Path, help="JSON Lines file of events")
    p.add_argument("--out", type=Path, default=Path("var/replay"), help="output folder")
    p.add_argument("--db", help="also write the results into this SQL database")
    p.add_argument(
        "--run",
        help="with --db: write under this run name (its own SQLite file or PostgreSQL "
        "schema run_NAME, docs/sql.md 'Runs'); needed when the database holds rows",
    )
    p.add_argument(
        "--allow-rejected",
        action="store_true",
        help="exit 0 even when events were rejected (they are listed in the output folder)",
    )
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("schema", help="event contract tools")
    schema_sub = _Subcommands(p.add_subparsers(dest="schema_command", required=True))
    p = schema_sub.add_parser("check", help="FULL_TRANSITIVE compatibility of schemas/")
    p.add_argument(
        "--schemas-dir", type=Path, default=None, help="schema folder (default: schemas/)"
    )
    p.set_defaults(func=cmd_schema_check)

    p = sub.add_parser("native", help="the mypyc-compiled stream core")
    native_sub = _Subcommands(p.add_subparsers(dest="native_command", required=True))
    p = native_sub.add_parser("build", help="compile pipeline/core with mypyc (in place)")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.set_defaults(func=cmd_native)
    p = native_sub.add_parser("status", help="compiled, stale or interpreted")
    p.set_defaults(func=cmd_native)
    p = native_sub.add_parser("clean", help="remove the compiled core")
    p.set_defaults(func=cmd_native)

    p = common(sub.add_parser("bench", help="benchmarks that print their figures"))
    p.add_argument(
        "what",
        nargs="?",
        default="stream",
        choices=("stream", "codec", "replay", "pipeline", "sink", "peers", "scaling", "latency"),
        help="stream (the default) = pipeline, then replay: the stream core's two targets; "
        "peers = cxstream against Kafka Streams on one local broker; "
        "scaling = one worker, then two in one group, and the ratio of their rates; "
        "latency = breach emission latency of a live worker (--events caps the simulator)",
    )
    p.add_argument("--events", type=int, default=100_000, help="simulator events to run")
    p.add_argument("--db", help="SQLAlchemy URL for the sink benchmark")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("ops", help="operations config generated from the settings")
    ops_sub = _Subcommands(p.add_subparsers(dest="ops_command", required=True))
    p = ops_sub.add_parser(
        "alertmanager-config", help="Alertmanager routing: a receiver per channel team"
    )
    p.add_argument("--output", type=Path, help="write here (default: standard output)")
    p.add_argument(
        "--webhook-base", default="http://alert-webhook:8080", help="receivers' webhook URL base"
    )
    p.set_defaults(func=cmd_ops)

    p = common(sub.add_parser("wall", help="the fleet-wide ops wall, apart from the workers"))
    p.add_argument("--db", help="SQLAlchemy URL of the sink's store (overrides sql.url)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=6070, help="port to listen on (0: a free one)")
    p.add_argument(
        "--lang", choices=("en", "fi"), help="label language (default: ops.wall_language)"
    )
    p.add_argument(
        "--shifts", default="07:00,15:00,23:00", help="local shift start times, comma-separated"
    )
    p.add_argument("--no-kafka", action="store_true", help="do not read lag and workers from Kafka")
    p.add_argument(
        "--prometheus",
        help="Prometheus URL scraping the workers: waiting now and oldest wait fleet-wide "
        "(default: ops.prometheus_url; none: not shown)",
    )
    p.set_defaults(func=cmd_wall)

    p = common(sub.add_parser("demo", help="the whole pipeline on the embedded default"))
    p.add_argument("--rate", type=float, default=40.0, help="simulated events/s")
    p.add_argument(
        "--customers",
        type=int,
        default=DEMO_CUSTOMERS_DEFAULT,
        help="simulated customers (larger than simulate's: the time-lapse is dense)",
    )
    p.add_argument("--seed", type=int, default=7, help="random seed")
    p.add_argument(
        "--speedup",
        type=float,
        default=30.0,
        help="time-lapse: simulated time runs this many times faster than the wall clock",
    )
    p.add_argument("--lapse", type=float, default=LAPSE_DEFAULT_SECONDS, help=LAPSE_HELP)
    p.add_argument("--db", help="SQLAlchemy URL (default: SQLite file under var/)")
    p.add_argument(
        "--reuse-db",
        action="store_true",
        help="keep the database of an earlier run and add to it (default: the earlier "
        "SQLite file is moved aside, a database with rows is refused)",
    )
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_garbage_collector()
    try:
        return int(args.func(args) or 0)
    except CxstreamError as exc:
        print(f"cxstream: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
