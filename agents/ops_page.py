"""The live ops wall screen, served by the worker's own web server.

``GET /ops`` is a self-contained HTML page (no external assets) that polls
``GET /ops/status.json`` every 2 seconds. The status is built by
:func:`pipeline.ops_status.build_status` from the samples of the same registry that
``/metrics`` serves, so the screen and Prometheus show the same numbers. The one
figure Prometheus would compute with ``increase(...[1h])`` -- channel-switch
failures in the last hour -- comes from counter snapshots a timer takes every few
seconds into a :class:`~pipeline.ops_status.CounterWindow`.

Each worker shows its own partitions, like its ``/metrics``: with several workers,
the Grafana dashboard is the view of the whole group. The fleet-wide wall
(``/ops/wall``, :mod:`pipeline.wall`) shows the whole group from the SQL store and
Kafka, so every worker serves the same figures (docs/ops.md, "The fleet-wide wall").
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from typing import Any

import faust

from pipeline.metrics import Metrics
from pipeline.ops_status import (
    ChannelView,
    CounterWindow,
    build_status,
    flatten,
    switch_failure_totals,
)
from pipeline.settings import Settings
from pipeline.wall import LANGUAGES, read_wall, wall_config

SNAPSHOT_SECONDS = 5.0


def channel_views(settings: Settings) -> list[ChannelView]:
    """Configured channels in display order: web messages first, then as configured.

    Web messages lead because their two-hour target is the one the bank watches
    most closely; the warning ratio is the smallest ``warning_share`` of the
    channel's policies (None: no policy, nothing can breach).
    """
    warning: dict[str, float] = {}
    for policy in settings.policies:
        share = policy.warning_share
        warning[policy.channel] = min(share, warning.get(policy.channel, share))
    keys = sorted(settings.channels.keys, key=lambda key: key != "web_message")
    views = []
    for key in keys:
        channel = settings.channels.get(key)
        name = channel.display_name if channel is not None else key
        views.append(ChannelView(key, name, warning.get(key)))
    return views


def register_ops_pages(app: faust.App, metrics: Metrics, settings: Settings) -> CounterWindow:
    """Register ``/ops``, ``/ops/status.json`` and the snapshot timer on ``app``.

    Call once, before the app starts. Returns the switch-failure window (tests and
    debugging read it). The first snapshot is taken here, while every counter is
    still zero, so during the first hour "last hour" means "since start".
    """
    html = resources.files("pipeline.static").joinpath("ops.html").read_bytes()
    views = channel_views(settings)
    started_at = time.time()
    window = CounterWindow()
    window.record(time.monotonic(), {})

    def switch_totals() -> dict[str, float]:
        return switch_failure_totals(flatten(metrics.registry.collect()))

    @app.timer(SNAPSHOT_SECONDS)
    async def snapshot_switch_failures() -> None:
        window.record(time.monotonic(), switch_totals())

    @app.page("/ops")
    async def ops_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # aiohttp takes no charset in content_type; the page declares UTF-8 itself.
        return web.bytes(html, content_type="text/html", headers={"Cache-Control": "no-store"})

    @app.page("/ops/status.json")
    async def ops_status(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # One collect() for every figure, so the document is one consistent reading.
        samples = flatten(metrics.registry.collect())
        last_hour = window.increase(time.monotonic(), switch_failure_totals(samples))
        status = build_status(
            samples,
            views,
            switch_failures_last_hour=last_hour,
            generated_at=time.time(),
            started_at=started_at,
        )
        return web.json(status, headers={"Cache-Control": "no-store"})

    register_wall_pages(app, metrics, settings)
    return window


def register_wall_pages(app: faust.App, metrics: Metrics, settings: Settings) -> None:
    """``/ops/wall`` and ``/ops/wall.json``: the fleet-wide wall (:mod:`pipeline.wall`).

    The SQL engine is made at the first request, so a worker whose database is
    absent still starts; the wall then answers 503 until the store is there.
    """
    html = resources.files("pipeline.static").joinpath("wall.html").read_bytes()
    config = wall_config(settings, lang=settings.ops.wall_language)
    engines: list[Any] = []

    def document() -> dict[str, Any]:
        if not engines:
            from sqlalchemy import create_engine

            engines.append(create_engine(settings.sql.url))
        oldest: dict[str, float] = {}
        waiting: dict[str, float] = {}
        for sample in flatten(metrics.registry.collect()):
            key = sample.labels.get("channel", "")
            if sample.name == "cxstream_oldest_unanswered_seconds":
                oldest[key] = max(sample.value, oldest.get(key, 0.0))
            elif sample.name == "cxstream_waiting_contacts":
                waiting[key] = waiting.get(key, 0.0) + sample.value
        return read_wall(
            engines[0],
            config,
            settings.kafka,
            oldest_unanswered=oldest,
            waiting_now=waiting,
            served_by="worker",
            prometheus_url=settings.ops.prometheus_url,
        )

    @app.page("/ops/wall")
    async def wall_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(html, content_type="text/html", headers={"Cache-Control": "no-store"})

    @app.page("/ops/wall.json")
    async def wall_json(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        try:
            # SQL and Kafka reads block: keep them off the event loop.
            body = await asyncio.to_thread(document)
        except Exception as exc:  # the store is down or not created yet
            return web.json({"error": str(exc)}, status=503, headers={"Cache-Control": "no-store"})
        lang = request.query.get("lang")
        if lang in LANGUAGES:
            body["lang"] = lang
        return web.json(body, headers={"Cache-Control": "no-store"})
