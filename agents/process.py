"""The stream-core role: a Faust app that hosts the batch loop of ``pipeline.runtime``.

Faust does what it is good at here: the app's lifecycle (start, signals, a
crash ends the worker), the timer, and the web server with ``/metrics``,
``/healthz`` and ``/ops``. It does not carry the records: Faust pays its
consumer, conductor, channel and stream machinery once per message, which cost
about twice the CPU per event of the whole batch loop (docs/architecture.md,
"Runtime options measured"), and its public API has no batch delivery. So the
input is read per batch by the loop's own consumer in the group
``cxstream-<prefix>-process``, and the app has no agents and no tables; its own
consumer group (``...-process-host``) subscribes to nothing of ours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Hashable
from typing import Any

import faust

from pipeline.metrics import Metrics
from pipeline.runtime.config import loop_config
from pipeline.runtime.gauges import tightest_targets, update_gauges
from pipeline.runtime.loop import StreamLoop
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: How long a stopping worker waits for the batch in hand to be committed.
STOP_TIMEOUT_S = 10.0


class ProcessRole:
    """Registers the loop's task and timer on a Faust app."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        metrics: Metrics,
        *,
        on_batch: Callable[[int], None] | None = None,
        input_topic: str | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        config = loop_config(settings)
        # A benchmark reads one shared input in several runs, each with its own
        # outputs, state and group (agents/bench_worker.py).
        self.config = (
            dataclasses.replace(config, input_topic=input_topic) if input_topic else config
        )
        self.loop = StreamLoop(
            settings,
            self.config,
            metrics=metrics,
            identity_metrics=metrics.identity,
            on_batch=on_batch,
        )
        self._targets = tightest_targets(settings)
        self._started = asyncio.Event()
        self._running: asyncio.Future[None] | None = None
        app.task(self._consume)
        app.timer(settings.worker.tick_seconds)(self._tick)
        # mode's Signal stubs do not admit async receivers, which it does support.
        app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]

    async def _consume(self) -> None:
        """The loop, from joining the group to leaving it; a failure crashes the worker."""
        self._running = asyncio.get_running_loop().create_future()
        try:
            await self.loop.start()
            self._started.set()
            await self.loop.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Outputs, state or offsets could not be written, or the broker is
            # gone for longer than the clients wait: stop the worker (exit
            # non-zero, agents/crash_exit.py). A restart resumes from the state.
            log.critical("the stream loop failed; stopping: %r", exc, exc_info=exc)
            await self.app.crash(exc)
        finally:
            self._running.set_result(None)

    async def _tick(self) -> None:
        """Every ``worker.tick_seconds``: wall-clock timers (live mode), gauges, lag."""
        if not self._started.is_set() or self._running is None or self._running.done():
            return
        try:
            gauges = await self.loop.tick()
        except Exception as exc:
            log.critical("a timer tick could not be written; stopping: %r", exc, exc_info=exc)
            await self.app.crash(exc)
            return
        update_gauges(
            self.metrics,
            self.settings,
            gauges,
            input_topic=self.config.input_topic,
            applied_offsets=self.loop.handler.applied_offsets,
            log_end=self.loop.log_end,
            targets=self._targets,
            side_positions=self.loop.side_positions(),
        )

    async def _on_shutdown(self, sender: Any, **_: Any) -> None:
        """Commit the batch in hand, then leave the group, so a successor starts at once."""
        self.loop.stop()
        if self._running is not None and not self._running.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._running), timeout=STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("stopping with a batch not yet committed (it is read again)")
        try:
            await asyncio.wait_for(self.loop.close(), timeout=STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("the Kafka clients did not close within %ss", STOP_TIMEOUT_S)

    def progress(self) -> tuple[dict[Hashable, int | None], dict[Hashable, int | None]]:
        """Positions and log ends of the input partitions held, for ``/healthz``."""
        return self.loop.progress()
