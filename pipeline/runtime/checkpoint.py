"""The one commit function: outputs acknowledged, then state, then input positions.

Every path that writes results (a consumed batch, a timer tick) goes through
:func:`commit`; nothing else sends to Kafka or moves a position. The order is
what makes a restart exact (quix-streams' ``Checkpoint.commit`` keeps one order
the same way):

* **at least once**: the outputs are sent and their acknowledgements awaited;
  then the state (customer states, the partition's position last) is sent and
  acknowledged; only then the group's offsets are committed. A crash before the
  offsets leaves records to be redelivered; the state's stored position says
  which of them it already holds (``StreamHandler`` skips those), and outputs
  sent again are upserted by natural key downstream.
* **exactly once**: the same three writes inside one Kafka transaction, the
  offsets through ``send_offsets_to_transaction``. A crash aborts all three;
  the restart reads from the committed offsets against the state of the same
  transaction, so nothing is skipped, re-read or sent twice (for readers with
  ``isolation.level=read_committed``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.hotpath.config import EXACTLY_ONCE, Guarantee
from pipeline.streaming import Outgoing

log = logging.getLogger(__name__)

#: input partition -> {state key -> value; None deletes}. The position key is last.
StateChanges = Mapping[int, Mapping[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What one batch (or one tick) must write: its outputs, its state, its positions."""

    outgoing: Sequence[Outgoing] = ()
    state: StateChanges = field(default_factory=dict)
    #: input partition -> the offset to resume from (one past the last record).
    offsets: Mapping[int, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.outgoing or self.offsets or any(self.state.values()))


class Outputs(Protocol):
    """The producer side of the commit; :class:`pipeline.hotpath.clients.KafkaOutputs`."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        """Queue one record; the awaitable returned resolves on Kafka's acknowledgement."""
        ...

    async def begin_transaction(self) -> None: ...

    async def commit_transaction(self, offsets: Mapping[int, int]) -> None:
        """Add the input ``offsets`` to the open transaction, then commit it."""
        ...

    async def abort_transaction(self) -> None: ...


class Positions(Protocol):
    """The group's committed input offsets; :class:`pipeline.hotpath.clients.KafkaPositions`."""

    async def commit(self, offsets: Mapping[int, int]) -> None: ...


async def commit(
    checkpoint: Checkpoint,
    *,
    outputs: Outputs,
    positions: Positions,
    changelog_topic: str,
    guarantee: Guarantee,
) -> None:
    """Write ``checkpoint``: outputs acknowledged -> state -> positions (see the module).

    Returns once all of it is durable. If it raises, nothing after the failed
    step was written (at least once), or nothing at all (exactly once); the
    caller stops, and the restart resumes from what was committed.
    """
    if checkpoint.empty:
        return
    if guarantee == EXACTLY_ONCE:
        await outputs.begin_transaction()
        try:
            # Inside a transaction the order among the three does not matter:
            # all are in one flight, and none is visible before the commit.
            pending = await _send_outputs(outputs, checkpoint.outgoing)
            pending += await _send_state(outputs, checkpoint.state, changelog_topic)
            await _acknowledged(pending)
            await outputs.commit_transaction(checkpoint.offsets)
        except BaseException:
            await _abort(outputs)
            raise
        return
    await _acknowledged(await _send_outputs(outputs, checkpoint.outgoing))
    await _acknowledged(await _send_state(outputs, checkpoint.state, changelog_topic))
    if checkpoint.offsets:
        await positions.commit(checkpoint.offsets)


async def _send_outputs(outputs: Outputs, outgoing: Sequence[Outgoing]) -> list[Awaitable[Any]]:
    return [
        await outputs.send(
            record.topic,
            record.key,
            record.value,
            partition=record.partition,
            timestamp_ms=record.timestamp_ms,
            headers=record.headers,
        )
        for record in outgoing
    ]


async def _send_state(outputs: Outputs, state: StateChanges, topic: str) -> list[Awaitable[Any]]:
    # Input partition p's state lives on changelog partition p, as Faust's
    # tables place it: a restored partition reads exactly its own.
    return [
        await outputs.send(topic, key.encode(), value, partition=partition)
        for partition, changes in state.items()
        for key, value in changes.items()
    ]


async def _acknowledged(pending: list[Awaitable[Any]]) -> None:
    if pending:
        await asyncio.gather(*pending)


async def _abort(outputs: Outputs) -> None:
    try:
        await outputs.abort_transaction()
    except Exception as exc:  # a fenced or broken producer: the caller's error says more
        log.warning("aborting the transaction failed too: %r", exc)
