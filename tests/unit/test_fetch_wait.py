"""Faust's consumer fetches with a short long-poll (agents/fetch_wait.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport

from agents.app import build_app
from agents.fetch_wait import FETCH_MAX_WAIT_MS, ShortFetchWaitConsumerThread
from pipeline.settings_loader import build_settings


def _aiokafka_consumer(thread_class: type[AIOKafkaConsumerThread]) -> Any:
    """The aiokafka consumer a worker app's consumer thread would start (not started)."""

    async def build() -> Any:
        app = build_app(build_settings({}), role="process", web_enabled=False)
        consumer = cast(Consumer, app.consumer)  # made by the transport's consumer class
        thread = thread_class(consumer, loop=asyncio.get_running_loop(), beacon=consumer.beacon)
        aiokafka_consumer = thread._create_worker_consumer(cast(Transport, app.transport))
        await aiokafka_consumer.stop()  # never started: only closes its client
        # The threads' own loops (the consumer made one too); they never ran.
        for loop in (thread.thread_loop, consumer._thread.thread_loop):
            loop.close()
        return consumer, aiokafka_consumer

    return asyncio.run(build())


def test_the_worker_apps_consumer_asks_the_broker_to_wait_at_most_100_ms() -> None:
    consumer, aiokafka_consumer = _aiokafka_consumer(ShortFetchWaitConsumerThread)
    assert type(consumer._thread) is ShortFetchWaitConsumerThread
    assert aiokafka_consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS == 100


def test_faust_still_writes_1500_ms_into_its_consumer_so_the_workaround_is_needed() -> None:
    """When this fails, Faust changed its consumer: check whether agents/fetch_wait.py can go."""
    _, aiokafka_consumer = _aiokafka_consumer(AIOKafkaConsumerThread)
    assert aiokafka_consumer._fetch_max_wait_ms == 1500
