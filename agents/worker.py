"""Start a Faust worker for one role (``process`` or ``sink``).

Called by ``cxstream worker`` and ``cxstream sink``. Builds the metrics registry,
the app and the role's agents from one :class:`~pipeline.settings.Settings`,
creates the project's topics (broker auto-creation is off), serves ``/metrics``
on the role's web port, and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging

import faust
from prometheus_client import CollectorRegistry, generate_latest

from agents.app import build_app
from pipeline import __version__
from pipeline.core import core_mode
from pipeline.metrics import Metrics
from pipeline.settings import Settings
from pipeline.topics import ensure_topics, project_topics

ROLES = ("process", "sink")
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


def create_role_app(settings: Settings, role: str, *, web_port: int | None = None) -> faust.App:
    """A Faust app with the role's agents and a ``/metrics`` page registered."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.set_worker_info(__version__, settings.config_hash, core_mode())
    app = build_app(settings, role=role, web_port=web_port)
    if role == "process":
        from agents.process import ProcessRole

        role_impl: object = ProcessRole(app, settings, metrics)
    else:
        from agents.sink import SinkRole
        from pipeline.sink.pseudonym import Pseudonymizer
        from pipeline.sink.store import SqlStore

        pseudonymizer = (
            Pseudonymizer.from_settings(settings.sql) if settings.sql.pseudonymise else None
        )
        store = SqlStore(settings.sql.url, pseudonymizer=pseudonymizer)
        role_impl = SinkRole(app, settings, metrics, store)

    @app.page("/metrics")
    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # aiohttp takes the charset separately; the exposition format is UTF-8.
        return web.bytes(generate_latest(registry), content_type=METRICS_CONTENT_TYPE)

    if role == "process":
        from agents.ops_page import register_ops_pages

        register_ops_pages(app, metrics, settings)  # the /ops wall screen

    @app.page("/healthz")
    async def health_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.json({"status": "ok", "role": role, "version": __version__})

    app.cxstream_role = role_impl  # type: ignore[attr-defined]  # keeps the role alive, aids debugging
    app.cxstream_metrics = metrics  # type: ignore[attr-defined]
    return app


class QuietWorker(faust.Worker):
    """A Faust worker without the terminal spinner.

    At log level WARN and above, Faust's worker sets the root logger to DEBUG so
    its spinner can turn on every record; every aiokafka send then builds a
    debug LogRecord, which cost about a tenth of the worker's time in the
    pipeline benchmark.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


def run_worker(
    settings: Settings, role: str, *, loglevel: str = "info", web_port: int | None = None
) -> None:
    ensure_topics(settings.kafka, project_topics(settings.kafka))
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
    worker.execute_from_commandline()
