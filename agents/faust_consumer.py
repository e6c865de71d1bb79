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
3. **An offset acknowledged twice does not stall the commit** (robinhood/faust#625,
   #559; still in faust-streaming 0.15.3). Faust books a gap when its fetcher
   jumps ahead, and folds the gap's offsets into its acknowledged list at commit
   time without checking for offsets already there; records of the gap that are
   delivered after all (after a takeover they are) are acknowledged a second time
   too. ``_new_offset`` commits only the first run of consecutive offsets, and a
   duplicate ends the run: the commit then moved one offset per commit round
   (the failover test saw a partition's committed offset take 60 s to cover 270
   records the worker had applied). Here the gap is folded in without duplicates
   and the list is de-duplicated before Faust's own ``_new_offset`` runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if acked:
            _fold_gap_into_acked(self._gap[tp], acked)
            acked[:] = sorted(set(acked))
        return super()._new_offset(tp)


def _fold_gap_into_acked(gap: Any, acked: list[int]) -> None:
    """What Faust's ``_new_offset`` does with a partition's gap (an ``IntervalTree``),
    without adding an offset twice. A function, not a method: a private method of
    our own on Faust's consumer class could shadow one of Faust's."""
    if not gap:
        return
    max_offset = max(acked)
    intervals = sorted(gap.overlap(0, max_offset), key=lambda interval: interval.begin)
    if not intervals:
        return
    gap_offsets = [o for interval in intervals for o in range(interval.begin, interval.end)]
    gap.chop(0, max(gap_offsets[-1], max_offset + 1))
    acked.extend(gap_offsets)


def use_worker_consumer(app: faust.App) -> None:
    """Make ``app`` (a ``kafka://`` app, before it starts) use :class:`WorkerConsumer`."""
    # The transport's consumer class is looked up when the consumer is made.
    app.transport.Consumer = WorkerConsumer  # type: ignore[misc]
