"""The one commit function (pipeline/runtime/checkpoint.py): its order and its refusals.

The Kafka clients are replaced by recorders of what was asked of them, in order:
the commit order is logic of its own, and the integration tests
(test_worker_guarantees, test_stream_matches_replay, test_failover) run it on a
real broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RecordTooLargeError

from pipeline.dlq import TARGET_TOPIC
from pipeline.runtime.checkpoint import Checkpoint, Queued, commit
from pipeline.streaming import Outgoing

DLQ = "cx.dlq"
CHANGELOG = "cx-state"


class RecordingOutputs:
    """Outputs that log every call; ``refuse``: value -> error of its acknowledgement.

    ``send_many`` queues one batch per topic, as Kafka takes it: one
    acknowledgement for the batch, refused as a whole if any record in it is.
    """

    def __init__(self, refuse: Mapping[bytes, BaseException] = {}, raise_on_send: Any = None):
        self.calls: list[tuple[Any, ...]] = []
        self.refuse = refuse
        self.raise_on_send = raise_on_send

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
        if self.raise_on_send is not None and value == self.raise_on_send[0]:
            raise self.raise_on_send[1]
        self.calls.append(("send", topic, key, value, tuple(headers or ())))
        return self._acknowledgement(topic, value, self.refuse.get(value or b""))

    async def send_many(self, records: Sequence[Outgoing]) -> Queued:
        queued = Queued()
        batches: dict[str, list[Outgoing]] = {}
        for record in records:
            if self.raise_on_send is not None and record.value == self.raise_on_send[0]:
                queued.refused.append((record, self.raise_on_send[1]))
                continue
            self.calls.append(
                ("send", record.topic, record.key, record.value, tuple(record.headers or ()))
            )
            batches.setdefault(record.topic, []).append(record)
        for topic, batch in batches.items():
            errors = [self.refuse[r.value] for r in batch if r.value in self.refuse]
            value = b"+".join(r.value or b"" for r in batch)
            queued.sent.append(
                (batch, self._acknowledgement(topic, value, errors[0] if errors else None))
            )
        return queued

    def _acknowledgement(
        self, topic: str, value: bytes | None, error: BaseException | None
    ) -> Awaitable[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(None)
        calls = self.calls

        async def acknowledged() -> Any:
            calls.append(("ack", topic, value))
            return await future

        return acknowledged()

    async def begin_transaction(self) -> None:
        self.calls.append(("begin",))

    async def commit_transaction(
        self, offsets: Mapping[int, int], others: Mapping[str, Mapping[int, int]]
    ) -> None:
        self.calls.append(("commit_transaction", dict(offsets), *_others(others)))

    async def abort_transaction(self) -> None:
        self.calls.append(("abort",))


class RecordingPositions:
    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls

    async def commit(
        self, offsets: Mapping[int, int], others: Mapping[str, Mapping[int, int]]
    ) -> None:
        self.calls.append(("offsets", dict(offsets), *_others(others)))


def _others(others: Mapping[str, Mapping[int, int]]) -> tuple[dict[str, dict[int, int]], ...]:
    """The other topics' offsets in a recorded call, left out when there are none."""
    return ({topic: dict(o) for topic, o in others.items()},) if others else ()


def checkpoint() -> Checkpoint:
    return Checkpoint(
        outgoing=[Outgoing("cx.sessions", b"s1", b"out-1"), Outgoing("cx.sla", b"k1", b"out-2")],
        state={0: {"c1": b"state-1", "__clock__0": b"position"}},
        offsets={0: 42},
    )


def run(outputs: RecordingOutputs, guarantee: str, cp: Checkpoint | None = None) -> None:
    asyncio.run(
        commit(
            cp or checkpoint(),
            outputs=outputs,
            positions=RecordingPositions(outputs.calls),
            changelog_topic=CHANGELOG,
            guarantee=guarantee,  # type: ignore[arg-type]
            dead_letter_topic=DLQ,
            now_ms=lambda: 1_000,
        )
    )


def kinds(calls: list[tuple[Any, ...]]) -> list[str]:
    return [f"{c[0]}:{c[1]}" if c[0] in ("send", "ack") else c[0] for c in calls]


def test_at_least_once_writes_outputs_acknowledged_then_state_then_offsets() -> None:
    outputs = RecordingOutputs()

    run(outputs, "at_least_once")

    assert kinds(outputs.calls) == [
        "send:cx.sessions",
        "send:cx.sla",
        "ack:cx.sessions",
        "ack:cx.sla",
        f"send:{CHANGELOG}",
        f"send:{CHANGELOG}",
        f"ack:{CHANGELOG}",
        "offsets",
    ]
    # The position is the last state entry written.
    state_values = [c[3] for c in outputs.calls if c[0] == "send" and c[1] == CHANGELOG]
    assert state_values == [b"state-1", b"position"]
    assert outputs.calls[-1] == ("offsets", {0: 42})


def test_an_output_the_broker_refuses_for_good_becomes_a_dead_letter_and_the_rest_is_written() -> (
    None
):
    outputs = RecordingOutputs(refuse={b"out-1": MessageSizeTooLargeError("too large")})

    run(outputs, "at_least_once")

    letters = [c for c in outputs.calls if c[0] == "send" and c[1] == DLQ]
    assert len(letters) == 1
    _, _, key, value, headers = letters[0]
    assert value is None  # headers only: the value is what could not be sent
    assert key is not None and key.startswith(b"cx.sessions/any/sha256:")
    assert (TARGET_TOPIC, b"cx.sessions") in headers
    assert ("offsets", {0: 42}) in outputs.calls
    assert [c[3] for c in outputs.calls if c[0] == "send" and c[1] == CHANGELOG] == [
        b"state-1",
        b"position",
    ]


def test_a_refused_batch_is_sent_again_record_by_record_and_only_the_refused_one_is_lost() -> None:
    outputs = RecordingOutputs(refuse={b"out-1": MessageSizeTooLargeError("too large")})
    two_in_one_batch = Checkpoint(
        outgoing=[Outgoing("cx.sessions", b"s1", b"out-1"), Outgoing("cx.sessions", b"s2", b"ok")],
        state={0: {"c1": b"state-1"}},
        offsets={0: 42},
    )

    run(outputs, "at_least_once", two_in_one_batch)

    sends = [c[3] for c in outputs.calls if c[0] == "send" and c[1] == "cx.sessions"]
    assert sends == [b"out-1", b"ok", b"out-1", b"ok"]  # the batch, then one by one
    assert ("ack", "cx.sessions", b"ok") in outputs.calls
    letters = [c for c in outputs.calls if c[0] == "send" and c[1] == DLQ]
    assert len(letters) == 1 and letters[0][2].startswith(b"cx.sessions/any/sha256:")
    assert outputs.calls[-1] == ("offsets", {0: 42})


def test_an_output_the_client_refuses_before_sending_becomes_a_dead_letter() -> None:
    outputs = RecordingOutputs(raise_on_send=(b"out-2", RecordTooLargeError("over max")))

    run(outputs, "at_least_once")

    letters = [c for c in outputs.calls if c[0] == "send" and c[1] == DLQ]
    assert len(letters) == 1 and (TARGET_TOPIC, b"cx.sla") in letters[0][4]
    assert outputs.calls[-1] == ("offsets", {0: 42})


def test_a_failure_that_is_not_the_records_fails_the_commit_before_state_and_offsets() -> None:
    outputs = RecordingOutputs(refuse={b"out-2": KafkaConnectionError("broker gone")})

    with pytest.raises(KafkaConnectionError):
        run(outputs, "at_least_once")

    assert not [c for c in outputs.calls if c[0] == "send" and c[1] in (CHANGELOG, DLQ)]
    assert not [c for c in outputs.calls if c[0] == "offsets"]


def test_exactly_once_writes_all_three_in_one_transaction() -> None:
    outputs = RecordingOutputs()

    run(outputs, "exactly_once")

    assert outputs.calls[0] == ("begin",)
    assert outputs.calls[-1] == ("commit_transaction", {0: 42})
    assert not [c for c in outputs.calls if c[0] in ("offsets", "abort")]
    assert len([c for c in outputs.calls if c[0] == "send"]) == 4
    assert len([c for c in outputs.calls if c[0] == "ack"]) == 3  # a batch per topic


def test_exactly_once_a_refusal_by_the_broker_aborts_the_whole_batch() -> None:
    outputs = RecordingOutputs(refuse={b"out-1": MessageSizeTooLargeError("too large")})

    with pytest.raises(MessageSizeTooLargeError):
        run(outputs, "exactly_once")

    assert outputs.calls[-1] == ("abort",)
    assert not [c for c in outputs.calls if c[0] == "commit_transaction"]


def test_an_empty_checkpoint_writes_nothing() -> None:
    outputs = RecordingOutputs()

    run(outputs, "exactly_once", Checkpoint())

    assert outputs.calls == []


IDENTITY_CHANGELOG = "cx-identity-state"


def identity_checkpoint() -> Checkpoint:
    """A batch of the identity processors (issue 16) beside the customers'."""
    return Checkpoint(
        outgoing=[Outgoing("cx.interactions-rekeyed", b"c1", b"released")],
        state={0: {"c1": b"state-1", "__clock__0": b"position"}},
        offsets={0: 42},
        identity_state={2: {"phone:+358": b"identifier", "__clock__2": b"identity-position"}},
        other_offsets={"cx.identity": {2: 7}, "cx.interactions-rekeyed": {0: 3}},
    )


def run_identity(outputs: RecordingOutputs, guarantee: str) -> None:
    asyncio.run(
        commit(
            identity_checkpoint(),
            outputs=outputs,
            positions=RecordingPositions(outputs.calls),
            changelog_topic=CHANGELOG,
            guarantee=guarantee,  # type: ignore[arg-type]
            dead_letter_topic=DLQ,
            identity_changelog_topic=IDENTITY_CHANGELOG,
        )
    )


def test_the_identity_processors_re_keyed_records_state_and_offsets_go_the_one_commit_order():
    outputs = RecordingOutputs()

    run_identity(outputs, "at_least_once")

    assert kinds(outputs.calls) == [
        "send:cx.interactions-rekeyed",
        "ack:cx.interactions-rekeyed",
        f"send:{CHANGELOG}",
        f"send:{CHANGELOG}",
        f"send:{IDENTITY_CHANGELOG}",
        f"send:{IDENTITY_CHANGELOG}",
        f"ack:{CHANGELOG}",
        f"ack:{IDENTITY_CHANGELOG}",
        "offsets",
    ]
    assert outputs.calls[-1] == (
        "offsets",
        {0: 42},
        {"cx.identity": {2: 7}, "cx.interactions-rekeyed": {0: 3}},
    )


def test_exactly_once_the_identity_offsets_join_the_one_transaction():
    outputs = RecordingOutputs()

    run_identity(outputs, "exactly_once")

    assert outputs.calls[0] == ("begin",)
    assert outputs.calls[-1] == (
        "commit_transaction",
        {0: 42},
        {"cx.identity": {2: 7}, "cx.interactions-rekeyed": {0: 3}},
    )
    assert f"send:{IDENTITY_CHANGELOG}" in kinds(outputs.calls)


def test_identity_state_without_an_identity_changelog_is_refused_before_anything_is_sent():
    outputs = RecordingOutputs()
    with pytest.raises(ValueError, match="no identity changelog topic"):
        run(outputs, "at_least_once", identity_checkpoint())
    assert outputs.calls == []
