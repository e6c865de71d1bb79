"""Faust's aiokafka consumer with two fixes faust-streaming 0.15.3 lacks.

:class:`WorkerConsumer` is installed on every app :func:`agents.app.build_app`
makes (``use_worker_consumer``). Both fixes touch Faust's protected consumer
methods; pinned to faust-streaming 0.15.3, tested in
``tests/unit/test_faust_consumer.py`` and ``tests/unit/test_fetch_wait.py``,
each with a test that fails once Faust no longer needs the fix.

1. **The fetch long-poll** (``agents/fetch_wait.py``): resumed partitions are read
   within 100 ms instead of after Faust's hard-coded 1.5 s.
2. **A failed commit is not booked as done** (faust-streaming/faust#316, fixed
   upstream by faust-streaming/faust#692 after 0.15.3). ``Consumer._commit_offsets``
   records the offsets in ``_committed_offset`` even when the commit failed; an
   offset commit sent while the group rebalances fails with "already rebalanced",
   which Faust drops without a log line. Faust then believes the partition is
   committed and never commits it again unless new records arrive: reproduced by
   ``test_two_workers_started_together_commit_every_partition_to_its_end`` (2 of 5
   runs: one partition's committed offset stayed 48 records behind its end for
   60 s, as an early failover run had seen for 240 s). Here a failed commit
   leaves the bookkeeping where it was, so the next commit round (or
   ``ProcessRole._unblock_stuck_commits`` for an idle partition) commits again.
"""

from __future__ import annotations

from collections.abc import Mapping

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

from agents.fetch_wait import ShortFetchWaitConsumerThread


class WorkerConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer: short fetch wait, failed commits not booked."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ShortFetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        before = {tp: self._committed_offset.get(tp) for tp in offsets}
        did_commit = await super()._commit_offsets(offsets, start_new_transaction)
        if not did_commit:
            for tp, offset in offsets.items():
                # Only what this call booked: a revocation or a later commit in
                # the meantime changed the entry for its own reasons.
                if self._committed_offset.get(tp) == offset:
                    previous = before[tp]
                    if previous is None:
                        self._committed_offset.pop(tp, None)
                    else:
                        self._committed_offset[tp] = previous
        return did_commit


def use_worker_consumer(app: faust.App) -> None:
    """Make ``app`` (a ``kafka://`` app, before it starts) use :class:`WorkerConsumer`."""
    # The transport's consumer class is looked up when the consumer is made.
    app.transport.Consumer = WorkerConsumer  # type: ignore[misc]
