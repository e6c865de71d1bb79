"""The hot path hosted in a Faust app: Faust keeps the lifecycle, the timer and the web.

The app has no agents and no tables: the loop is a Faust task, its clients are
its own (:mod:`pipeline.hotpath.loop`), and Faust's own consumer subscribes to
nothing. The live clock's tick is a Faust timer that goes through the same lock
and the same commit function as a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.hotpath.config import HotPathConfig
from pipeline.hotpath.loop import HotPath
from pipeline.settings import Settings
from pipeline.streaming import MetricsSink


def build_host(
    settings: Settings,
    config: HotPathConfig,
    *,
    metrics: MetricsSink | None = None,
    on_batch: Callable[[int], None] | None = None,
    web_enabled: bool = False,
) -> tuple[Any, HotPath]:
    """A Faust app whose one task runs a :class:`HotPath`, and that hot path."""
    import faust

    from pipeline.kafka_clients import faust_broker_credentials

    kafka = settings.kafka
    app_id = f"{config.group_id}-host"
    datadir = Path("var") / "faust" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        datadir=str(datadir),
        broker=f"kafka://{kafka.bootstrap.replace(',', ';kafka://')}",
        broker_credentials=faust_broker_credentials(kafka),
        store="memory://",
        web_enabled=web_enabled,
        web_port=settings.worker.web_port,
        web_bind=settings.worker.web_bind,
    )
    hot_path = HotPath(settings, config, metrics=metrics, on_batch=on_batch)
    started = False

    @app.task
    async def consume() -> None:
        nonlocal started
        await hot_path.start()
        started = True
        try:
            await hot_path.run()
        finally:
            await hot_path.close()

    @app.timer(settings.worker.tick_seconds)
    async def tick() -> None:
        if started and settings.worker.clock == "live":
            await hot_path.tick()

    return app, hot_path


def run_in_faust(
    settings: Settings,
    config: HotPathConfig,
    *,
    metrics: MetricsSink | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Run the host app as a Faust worker in this process until it is stopped."""
    import faust

    app, _ = build_host(settings, config, metrics=metrics, on_batch=on_batch)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
