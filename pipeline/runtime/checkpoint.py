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

A record the broker refuses for good (too large for the topic, corrupt, a
timestamp out of range) must not stop the worker: it would be refused again
after every restart (issue 12). At least once, each such output is replaced by
a headers-only dead letter (stage ``send``) and the rest of the checkpoint goes
on. Exactly once, a refusal the client sees before the record joins the
transaction (its own size check) is handled the same way; a refusal from the
broker fails the transaction, which is aborted, and the worker stops: the
stream core's size cap (``limits.max_record_bytes``) keeps records below the
broker's default limit, so this needs a topic configured below that cap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from pipeline.dlq import build_unsent_dead_letter
from pipeline.runtime.config import EXACTLY_ONCE, Guarantee
from pipeline.streaming import Outgoing

log = logging.getLogger(__name__)

#: Failures that concern a record, not the connection or the cluster: sending the
#: same bytes again cannot succeed. Kafka's INVALID_RECORD (87, e.g. a null key
#: on a compacted topic) is not among them: aiokafka 0.12 maps codes it does not
#: know to UnknownError and drops the code, so it cannot be told from a broker fault.
RECORD_ERRORS: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,  # MESSAGE_TOO_LARGE (10)
    RecordListTooLargeError,  # RECORD_LIST_TOO_LARGE (18)
    RecordTooLargeError,  # the client's own check
    CorruptRecordException,  # CORRUPT_MESSAGE (2)
    InvalidTimestampError,  # INVALID_TIMESTAMP (32)
)

#: input partition -> {state key -> value; None deletes}. The position key is last.
StateChanges = Mapping[int, Mapping[str, bytes | None]]
#: topic -> partition -> the offset to resume from (the topics besides the input).
TopicOffsets = Mapping[str, Mapping[int, int]]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What one batch (or one tick) must write: its outputs, its state, its positions."""

    outgoing: Sequence[Outgoing] = ()
    state: StateChanges = field(default_factory=dict)
    #: input partition -> the offset to resume from (one past the last record).
    offsets: Mapping[int, int] = field(default_factory=dict)
    #: identity partition -> its identifiers' changes, position last (issue 16):
    #: written beside ``state``, to the identity changelog.
    identity_state: StateChanges = field(default_factory=dict)
    #: The ``identity`` and ``interactions-rekeyed`` offsets, committed with ``offsets``.
    other_offsets: TopicOffsets = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (
            self.outgoing
            or self.offsets
            or any(self.state.values())
            or any(self.identity_state.values())
            or any(self.other_offsets.values())
        )


#: Records queued as one Kafka batch (one topic partition, in order) and the
#: acknowledgement of the whole batch: the broker takes or refuses it as one.
SentBatch = tuple[Sequence[Outgoing], Awaitable[Any]]


@dataclass(slots=True)
class Queued:
    """What :meth:`Outputs.send_many` queued, and what the client refused outright."""

    sent: list[SentBatch] = field(default_factory=list)
    #: Records the client's own checks refused before sending (too large, ...).
    refused: list[tuple[Outgoing, BaseException]] = field(default_factory=list)


class Outputs(Protocol):
    """The producer side of the commit; :class:`pipeline.runtime.clients.KafkaOutputs`."""

    async def send_many(self, records: Sequence[Outgoing]) -> Queued:
        """Queue ``records`` in order, a Kafka batch per topic partition (the hot path)."""
        ...

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

    async def commit_transaction(self, offsets: Mapping[int, int], others: TopicOffsets) -> None:
        """Add the input ``offsets`` and ``others`` to the open transaction, then commit it."""
        ...

    async def abort_transaction(self) -> None: ...


class Positions(Protocol):
    """The group's committed input offsets; :class:`pipeline.runtime.clients.KafkaPositions`."""

    async def commit(self, offsets: Mapping[int, int], others: TopicOffsets) -> None: ...


async def commit(
    checkpoint: Checkpoint,
    *,
    outputs: Outputs,
    positions: Positions,
    changelog_topic: str,
    guarantee: Guarantee,
    dead_letter_topic: str | None = None,
    identity_changelog_topic: str | None = None,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> None:
    """Write ``checkpoint``: outputs acknowledged -> state -> positions (see the module).

    The identity processors' part (issue 16) goes the same way in the same call:
    their re-keyed records and link records are among the outputs, their state
    (``identity_state``, to ``identity_changelog_topic``) is written with the
    customers', and their offsets (``other_offsets``) with the input's.

    Returns once all of it is durable. If it raises, nothing after the failed
    step was written (at least once), or nothing at all (exactly once); the
    caller stops, and the restart resumes from what was committed.
    """
    if checkpoint.empty:
        return
    identity_topic = identity_changelog_topic
    if any(checkpoint.identity_state.values()) and identity_topic is None:
        raise ValueError("identity state to write, and no identity changelog topic")
    if guarantee == EXACTLY_ONCE:
        await outputs.begin_transaction()
        try:
            # Inside a transaction the order among the three does not matter:
            # all are in one flight, and none is visible before the commit.
            refused = Refusals(dead_letter_topic, now_ms)
            sent = await _send_outputs(outputs, checkpoint.outgoing, refused)
            await refused.send(outputs)
            pending = [ack for _, ack in sent]
            states = await _send_states(outputs, checkpoint, changelog_topic, identity_topic)
            pending += [ack for _, ack in states]
            # A refusal from the broker fails this gather: the whole batch aborts.
            await _acknowledged(pending)
            await outputs.commit_transaction(checkpoint.offsets, checkpoint.other_offsets)
        except BaseException:
            await _abort(outputs)
            raise
        return
    refused = Refusals(dead_letter_topic, now_ms)
    sent = await _send_outputs(outputs, checkpoint.outgoing, refused)
    await refused.acknowledged(sent, outputs)
    await refused.send(outputs)
    states = await _send_states(outputs, checkpoint, changelog_topic, identity_topic)
    await _acknowledged([ack for _, ack in states])
    if checkpoint.offsets or any(checkpoint.other_offsets.values()):
        await positions.commit(checkpoint.offsets, checkpoint.other_offsets)


class Refusals:
    """Outputs the broker or the client refused for good, to be dead-lettered."""

    def __init__(self, dead_letter_topic: str | None, now_ms: Callable[[], int]) -> None:
        self.topic = dead_letter_topic
        self.now_ms = now_ms
        self.records: list[tuple[Outgoing, BaseException]] = []

    def take(self, record: Outgoing, error: BaseException) -> None:
        """Keep ``record`` for a dead letter, or re-raise when it cannot be one."""
        if self.topic is None or not isinstance(error, RECORD_ERRORS):
            raise error
        log.warning(
            "an output to %s was refused (%r); a headers-only dead letter stands for it",
            record.topic,
            error,
        )
        self.records.append((record, error))

    async def acknowledged(self, sent: Sequence[SentBatch], outputs: Outputs) -> None:
        """Await every acknowledgement; refused records are kept, any other failure raises.

        The broker refuses a batch as a whole, so the records of a refused batch
        of several are sent again one by one: only the ones refused then are
        kept for dead letters (the batch was not written, nothing is doubled).
        """
        outcomes = await asyncio.gather(*(ack for _, ack in sent), return_exceptions=True)
        one_by_one: list[tuple[Outgoing, Awaitable[Any]]] = []
        for (records, _), outcome in zip(sent, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                continue
            if len(records) == 1 or not isinstance(outcome, RECORD_ERRORS):
                self.take(records[0], outcome)
                continue
            for record in records:
                try:
                    one_by_one.append((record, await _send_one(outputs, record)))
                except Exception as exc:  # refused by the client's own checks
                    self.take(record, exc)
        outcomes = await asyncio.gather(*(ack for _, ack in one_by_one), return_exceptions=True)
        for (record, _), outcome in zip(one_by_one, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.take(record, outcome)

    async def send(self, outputs: Outputs) -> None:
        """Send one dead letter per refused record and await them."""
        if not self.records or self.topic is None:
            return
        pending = []
        for record, error in self.records:
            letter = build_unsent_dead_letter(
                topic=record.topic,
                partition=record.partition,
                key=record.key,
                value=record.value,
                error=error,
                stage="send",
                now_ms=self.now_ms(),
            )
            pending.append(await outputs.send(self.topic, letter.key, None, headers=letter.headers))
        self.records = []
        await _acknowledged(pending)


async def _send_outputs(
    outputs: Outputs, outgoing: Sequence[Outgoing], refused: Refusals
) -> list[SentBatch]:
    queued = await outputs.send_many(outgoing)
    for record, error in queued.refused:
        refused.take(record, error)
    return queued.sent


async def _send_one(outputs: Outputs, record: Outgoing) -> Awaitable[Any]:
    return await outputs.send(
        record.topic,
        record.key,
        record.value,
        partition=record.partition,
        timestamp_ms=record.timestamp_ms,
        headers=record.headers,
    )


async def _send_states(
    outputs: Outputs, checkpoint: Checkpoint, topic: str, identity_topic: str | None
) -> list[SentBatch]:
    """The customers' state and the identity processors' (issue 16), both acknowledged
    before any offset is committed."""
    sent = await _send_state(outputs, checkpoint.state, topic)
    if identity_topic is not None and any(checkpoint.identity_state.values()):
        sent += await _send_state(outputs, checkpoint.identity_state, identity_topic)
    return sent


async def _send_state(outputs: Outputs, state: StateChanges, topic: str) -> list[SentBatch]:
    # Input partition p's state lives on changelog partition p, as Faust's
    # tables place it: a restored partition reads exactly its own. Within a
    # partition the position entry stays last (one batch keeps the order).
    queued = await outputs.send_many(
        [
            Outgoing(topic, key.encode(), value, partition=partition)
            for partition, changes in state.items()
            for key, value in changes.items()
        ]
    )
    if queued.refused:
        raise queued.refused[0][1]  # a state entry must be written; no dead letter stands for it
    return queued.sent


async def _acknowledged(pending: list[Awaitable[Any]]) -> None:
    if pending:
        await asyncio.gather(*pending)


#: How long an abort may take. aiokafka 0.14 waits for the end of an abort on a
#: producer whose sender died (fenced by a successor with the same
#: transactional id) without end; the worker must stop instead.
ABORT_TIMEOUT_S = 10.0


async def _abort(outputs: Outputs) -> None:
    try:
        await asyncio.wait_for(outputs.abort_transaction(), timeout=ABORT_TIMEOUT_S)
    except Exception as exc:  # a fenced or broken producer: the caller's error says more
        log.warning("aborting the transaction failed too: %r", exc)
