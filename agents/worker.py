"""Start a Faust worker for one role (``process`` or ``sink``).

Called by ``cxstream worker`` and ``cxstream sink``. Builds the metrics registry,
the app and the role's agents from one :class:`~pipeline.settings.Settings`,
creates the project's topics (broker auto-creation is off), serves ``/metrics``
and ``/healthz`` on the role's web port, and runs until SIGINT/SIGTERM or a
crash; after a crash the process exits non-zero (``agents/crash_exit.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest

from agents.app import build_app
from agents.crash_exit import exit_when_crashed
from agents.health import ProgressWatch
from agents.log_limits import install_repeat_filter
from pipeline import __version__
from pipeline.core import core_mode
from pipeline.metrics import Metrics
from pipeline.runtime.changelog import (
    identity_changelog_topic,
    state_changelog_spec,
    state_changelog_topic,
)
from pipeline.settings import Settings
from pipeline.topics import ensure_topics, project_topics

ROLES = ("process", "sink")
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"

#: Positions and log ends of the partitions a role holds (see agents/health.py).
Progress = tuple[Mapping[Hashable, int | None], Mapping[Hashable, int | None]]


def create_role_app(settings: Settings, role: str, *, web_port: int | None = None) -> faust.App:
    """A Faust app with the role's agents and a ``/metrics`` page registered."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    registry = CollectorRegistry()
    metrics = Metrics(registry, queues=settings.labels.queues, teams=settings.labels.teams)
    metrics.set_worker_info(__version__, settings.config_hash, core_mode())
    app = build_app(settings, role=role, web_port=web_port)
    progress: Callable[[], Progress]
    if role == "process":
        from agents.process import ProcessRole

        process_role = ProcessRole(app, settings, metrics)
        role_impl: object = process_role
        progress = process_role.progress
    else:
        from agents.sink import SinkRole
        from pipeline.sink.pseudonym import Pseudonymizer
        from pipeline.sink.store import SqlStore

        pseudonymizer = (
            Pseudonymizer.from_settings(settings.sql) if settings.sql.pseudonymise else None
        )
        store = SqlStore(settings.sql.url, pseudonymizer=pseudonymizer)
        role_impl = SinkRole(app, settings, metrics, store)
        progress = lambda: sink_progress(app)  # noqa: E731

    @app.page("/metrics")
    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # aiohttp takes the charset separately; the exposition format is UTF-8.
        return web.bytes(generate_latest(registry), content_type=METRICS_CONTENT_TYPE)

    if role == "process":
        from agents.ops_page import register_ops_pages

        register_ops_pages(app, metrics, settings)  # the /ops wall screen

    watch = ProgressWatch(settings.worker.stuck_seconds)

    @app.page("/healthz")
    async def health_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # 503 when the role holds partitions with lag and none of its positions
        # advanced for worker.stuck_seconds: an orchestrator restarts it.
        health = watch.observe(*progress())
        body = {**health.as_json(), "role": role, "version": __version__}
        return web.json(body, status=200 if health.healthy else 503)

    @app.timer(1.0)
    async def observe_progress() -> None:
        # Readings between the orchestrator's probes, so a probe every minute
        # still sees a position that moved in between.
        watch.observe(*progress())

    app.cxstream_role = role_impl  # type: ignore[attr-defined]  # keeps the role alive, aids debugging
    app.cxstream_metrics = metrics  # type: ignore[attr-defined]
    return app


def sink_progress(app: faust.App) -> Progress:
    """The sink's positions: offsets committed this run (after their batch was written).

    The sink commits a batch only once the database took it, so a committed
    offset that stops while the log goes on means the writes stopped. A
    partition with no commit yet this run (just assigned, or nothing to read)
    is left out: its position is not known here. Read from Faust's monitor,
    whose offset mappings are public attributes.
    """
    monitor = app.monitor
    consumer = app.consumer
    positions: dict[Hashable, int | None] = {}
    ends: dict[Hashable, int | None] = {}
    for tp in consumer.assignment():
        committed = monitor.tp_committed_offsets.get(tp)
        if committed is None:
            continue
        positions[_tp_name(tp)] = committed
        try:
            ends[_tp_name(tp)] = consumer.highwater(tp)
        except Exception:  # unknown before the first fetch response: counted as no lag
            ends[_tp_name(tp)] = None
    return positions, ends


def _tp_name(tp: TP) -> str:
    return f"{tp.topic}/{tp.partition}"


class QuietWorker(faust.Worker):
    """A Faust worker without the terminal spinner, its Kafka logs rate-limited.

    At log level WARN and above, Faust's worker sets the root logger to DEBUG so
    its spinner can turn on every record; every aiokafka send then builds a
    debug LogRecord, which cost about a tenth of the worker's time in the
    pipeline benchmark.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        # Here, after mode configured the root logger's handlers: a filter put
        # on them earlier would be dropped with them.
        install_repeat_filter(logger)


def run_worker(
    settings: Settings, role: str, *, loglevel: str = "info", web_port: int | None = None
) -> None:
    topics = project_topics(settings.kafka)
    if role == "process":
        # Both changelogs have the input's partitions, compacted (issue 16: the
        # identity processors' beside the customers').
        topics[state_changelog_topic(settings.kafka)] = state_changelog_spec(settings.kafka)
        topics[identity_changelog_topic(settings.kafka)] = state_changelog_spec(settings.kafka)
    ensure_topics(settings.kafka, topics)
    app = create_role_app(settings, role, web_port=web_port)
    logging.basicConfig(level=loglevel.upper())
    logging.getLogger(__name__).info(
        "cxstream worker starting role=%s version=%s config_hash=%s core=%s",
        role,
        __version__,
        settings.config_hash,
        core_mode(),
    )
    worker = QuietWorker(app, loglevel=loglevel, quiet=True)
    exit_when_crashed(worker)
    worker.execute_from_commandline()
