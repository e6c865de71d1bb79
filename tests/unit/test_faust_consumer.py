"""A commit that failed is not booked as done (agents/faust_consumer.py, faust#316)."""

from __future__ import annotations

import asyncio
from typing import cast

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP

from agents.app import build_app
from agents.faust_consumer import WorkerConsumer
from pipeline.settings_loader import build_settings

TOPIC_PARTITION = TP("t.interactions", 1)


def _commit_offset_461_after_413(*, broker_accepts: bool, upstream: bool = False) -> int | None:
    """Faust's booked committed offset after committing 461 over a booked 413."""

    async def run() -> int | None:
        app = build_app(build_settings({}), role="process", web_enabled=False)
        consumer = cast(Consumer, app.consumer)
        consumer._thread.thread_loop.close()  # the consumer thread's loop; it never runs

        async def commit(offsets: object) -> bool:
            return broker_accepts  # False: "already rebalanced", dropped by Faust

        async def flush() -> None:
            return None

        consumer._commit = commit  # type: ignore[method-assign]
        consumer.assignment = lambda: {TOPIC_PARTITION}  # type: ignore[method-assign]
        app.producer.flush = flush  # type: ignore[method-assign]
        consumer._committed_offset[TOPIC_PARTITION] = 413
        if upstream:  # Faust's own method, on the same consumer
            await Consumer._commit_offsets(consumer, {TOPIC_PARTITION: 461})
        else:
            await consumer._commit_offsets({TOPIC_PARTITION: 461})
        return consumer._committed_offset.get(TOPIC_PARTITION)

    return asyncio.run(run())


def test_the_worker_app_uses_the_worker_consumer() -> None:
    async def run() -> type:
        app = build_app(build_settings({}), role="process", web_enabled=False)
        consumer = app.consumer
        cast(Consumer, consumer)._thread.thread_loop.close()
        return type(consumer)

    assert asyncio.run(run()) is WorkerConsumer


def test_a_commit_the_broker_refused_leaves_the_booked_offset_where_it_was() -> None:
    assert _commit_offset_461_after_413(broker_accepts=False) == 413


def test_a_commit_the_broker_accepted_is_booked() -> None:
    assert _commit_offset_461_after_413(broker_accepts=True) == 461


def test_faust_itself_still_books_a_refused_commit_so_the_fix_is_needed() -> None:
    """When this fails, Faust has faust#692: agents/faust_consumer.py's fix can go."""
    assert _commit_offset_461_after_413(broker_accepts=False, upstream=True) == 461


def _new_offset_with_a_gap_over_acknowledged_offsets(*, upstream: bool = False) -> int | None:
    """Faust's next commit offset when a booked gap covers offsets also acknowledged.

    Committed 276; offsets 276..280 acknowledged; the gap 277..279 booked as well
    (Faust books a gap when its fetcher jumps ahead, and those records can still be
    delivered and acknowledged afterwards, as after a takeover).
    """

    async def run() -> int | None:
        app = build_app(build_settings({}), role="process", web_enabled=False)
        consumer = cast(Consumer, app.consumer)
        consumer._thread.thread_loop.close()  # the consumer thread's loop; it never runs
        consumer._committed_offset[TOPIC_PARTITION] = 276
        consumer._acked[TOPIC_PARTITION] = [276, 277, 278, 279, 280]
        consumer._acked_index[TOPIC_PARTITION] = {276, 277, 278, 279, 280}
        await consumer._add_gap(TOPIC_PARTITION, 277, 279)
        if upstream:
            return Consumer._new_offset(consumer, TOPIC_PARTITION)
        return consumer._new_offset(TOPIC_PARTITION)

    return asyncio.run(run())


def test_a_gap_over_acknowledged_offsets_commits_past_all_of_them() -> None:
    assert _new_offset_with_a_gap_over_acknowledged_offsets() == 281


def test_faust_itself_still_stops_at_the_duplicate_so_the_fix_is_needed() -> None:
    """When this fails, Faust no longer duplicates gap offsets in its acknowledged list
    (robinhood/faust#625, #559): the fold in agents/faust_consumer.py can go."""
    assert _new_offset_with_a_gap_over_acknowledged_offsets(upstream=True) == 278
