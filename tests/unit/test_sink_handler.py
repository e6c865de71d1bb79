"""The sink's batch handler: every output record is stored or dead-lettered, never lost.

SQLite is the real store; the dead-letter producer is a test double that records
what it was given (the real producer is tested on the broker).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.contract.codec import RecordCodec
from pipeline.dlq import DeadLetter, parse_dead_letter_headers
from pipeline.errors import DeliveryError, SinkUnavailableError
from pipeline.metrics import Metrics
from pipeline.settings import Settings
from pipeline.settings_loader import build_settings
from pipeline.sink.handler import SinkBatchHandler
from pipeline.sink.memory import InMemorySink
from pipeline.sink.store import SqlStore, dump_tables
from tests.unit.test_sink_store import MINUTE, T0, contact, session

NOW_MS = 1_772_500_000_000
SETTINGS = build_settings({"kafka": {"topic_prefix": "cxt"}})
CONTACTS = "cxt.contacts"
SESSIONS = "cxt.sessions"


@dataclass(frozen=True)
class Message:
    """The attributes of a Faust message the handler reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = 1_772_450_000.123


class DeadLetters:
    """Test double of the dead-letter producer; ``fail`` errors are raised first."""

    def __init__(self, fail: list[Exception] | None = None) -> None:
        self.sent: list[tuple[str, DeadLetter]] = []
        self.fail = fail or []
        self.attempts = 0
        self.on_send: Any = None

    async def send(self, topic: str, letter: DeadLetter) -> None:
        self.attempts += 1
        if self.fail:
            raise self.fail.pop(0)
        if self.on_send is not None:
            self.on_send()
        self.sent.append((topic, letter))


async def no_sleep(_seconds: float) -> None:
    return None


def contact_message(offset: int, contact_id: str, **overrides: Any) -> Message:
    name, record = contact(contact_id, "chat", T0 + offset * MINUTE, "resolved", 5.0)
    value = RecordCodec(name).encode({**record, **overrides})
    return Message(CONTACTS, 2, offset, contact_id.encode(), value)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    sql_store = SqlStore(f"sqlite:///{tmp_path}/handler.db")
    yield sql_store
    sql_store.dispose()


def make_handler(
    store: Any, letters: DeadLetters, registry: CollectorRegistry, settings: Settings = SETTINGS
) -> SinkBatchHandler:
    return SinkBatchHandler(
        settings,
        Metrics(registry),
        store,
        letters.send,
        wall_ms=lambda: NOW_MS,
        sleep=no_sleep,
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


DECODE = {"stage": "decode", "reason": "DecodeError"}


def stored_contacts(store: SqlStore) -> list[str]:
    return [row["contact_id"] for row in dump_tables(store.url)["contacts"]]


def test_a_record_the_database_rejects_is_dead_lettered_and_the_rest_stored(
    store: SqlStore, registry: CollectorRegistry
) -> None:
    letters = DeadLetters()
    messages = [
        contact_message(10, "c10"),
        contact_message(11, "c11"),
        contact_message(12, "c12", started_at=2**62),  # an Avro long no datetime holds
        contact_message(13, "c13"),
    ]
    asyncio.run(make_handler(store, letters, registry).handle(messages))

    assert stored_contacts(store) == ["c10", "c11", "c13"]
    [(topic, letter)] = letters.sent
    headers = parse_dead_letter_headers(letter.headers)
    assert topic == "cxt.dlq"
    assert letter.key == b"cxt.contacts/2/12"
    assert letter.value == messages[2].value
    assert letter.timestamp_ms == 1_772_450_000_123
    assert {name: headers[name] for name in (
        "cx.dlq.source.topic", "cx.dlq.source.partition", "cx.dlq.source.offset",
        "cx.dlq.stage", "cx.dlq.error.class",
    )} == {
        "cx.dlq.source.topic": "cxt.contacts", "cx.dlq.source.partition": "2",
        "cx.dlq.source.offset": "12", "cx.dlq.stage": "sink",
        "cx.dlq.error.class": "SinkRejectedError",
    }  # fmt: skip
    assert "OverflowError" in headers["cx.dlq.error.message"]
    labels = {"stage": "sink", "reason": "SinkRejectedError"}
    assert sample(registry, "cxstream_dead_letters_total", **labels) == 1.0
    assert sample(registry, "cxstream_sink_database_up") == 1.0
    assert sample(registry, "cxstream_sink_rows_total", table="contacts") == 3.0


def test_an_undecodable_record_is_dead_lettered_at_stage_decode_not_skipped(
    store: SqlStore, registry: CollectorRegistry
) -> None:
    letters = DeadLetters()
    garbage = Message(SESSIONS, 0, 7, b"s9", b"not avro at all")
    tombstone = Message(SESSIONS, 0, 8, b"s8", None)
    messages = [contact_message(1, "c1"), garbage, tombstone]
    asyncio.run(make_handler(store, letters, registry).handle(messages))

    assert stored_contacts(store) == ["c1"]
    assert [letter.key for _, letter in letters.sent] == [b"cxt.sessions/0/7", b"cxt.sessions/0/8"]
    assert [letter.value for _, letter in letters.sent] == [b"not avro at all", None]
    headers = [parse_dead_letter_headers(letter.headers) for _, letter in letters.sent]
    assert [header["cx.dlq.stage"] for header in headers] == ["decode", "decode"]
    assert sample(registry, "cxstream_dead_letters_total", **DECODE) == 2


def test_a_dead_letter_is_cut_to_the_record_size_limit(registry: CollectorRegistry) -> None:
    """An output record near the broker's limit plus reason headers would be refused."""
    settings = build_settings(
        {"kafka": {"topic_prefix": "cxt"}, "limits": {"max_record_bytes": 10_000}}
    )
    letters = DeadLetters()
    huge = Message(CONTACTS, 1, 3, b"k", b"\x00" * 50_000)
    asyncio.run(make_handler(InMemorySink(), letters, registry, settings).handle([huge]))
    [(_, letter)] = letters.sent
    headers = parse_dead_letter_headers(letter.headers)
    assert letter.key == b"cxt.contacts/1/3"
    assert len(letter.value or b"") < 10_000
    assert (headers["cx.dlq.truncated"], headers["cx.dlq.value.bytes"]) == ("value", "50000")


def test_dead_letters_are_sent_only_after_the_good_records_are_stored(
    store: SqlStore, registry: CollectorRegistry
) -> None:
    letters = DeadLetters()
    seen_when_sent: list[list[str]] = []
    letters.on_send = lambda: seen_when_sent.append(stored_contacts(store))
    messages = [contact_message(1, "c1"), Message(CONTACTS, 2, 2, b"k", b"junk")]
    asyncio.run(make_handler(store, letters, registry).handle(messages))
    assert seen_when_sent == [["c1"]]


def test_a_failed_dead_letter_send_is_retried_until_the_broker_takes_it(
    store: SqlStore, registry: CollectorRegistry
) -> None:
    """The caller lets offsets go when handle returns: a dead letter must be in Kafka."""
    letters = DeadLetters(fail=[DeliveryError("broker down"), DeliveryError("broker down")])
    asyncio.run(
        make_handler(store, letters, registry).handle([Message(CONTACTS, 0, 5, None, b"junk")])
    )
    assert letters.attempts == 3
    assert [letter.key for _, letter in letters.sent] == [b"cxt.contacts/0/5"]
    assert sample(registry, "cxstream_dead_letters_total", **DECODE) == 1


def test_an_unavailable_database_is_retried_and_nothing_is_dead_lettered(
    registry: CollectorRegistry,
) -> None:
    sink = InMemorySink()
    sink.fail_next = [SinkUnavailableError("SQL store unreachable: connection refused")] * 3
    letters = DeadLetters()
    database_up: list[float | None] = []
    handler = make_handler(sink, letters, registry)

    async def record_sleep(_seconds: float) -> None:
        database_up.append(sample(registry, "cxstream_sink_database_up"))

    handler.sleep = record_sleep
    asyncio.run(handler.handle([contact_message(1, "c1"), contact_message(2, "c2")]))

    assert database_up == [0.0, 0.0, 0.0]
    assert [row["contact_id"] for row in sink.rows("contacts")] == ["c1", "c2"]
    assert letters.sent == []
    assert sample(registry, "cxstream_sink_database_up") == 1.0
    reason = {"reason": "SinkUnavailableError"}
    assert sample(registry, "cxstream_sink_errors_total", **reason) == 3.0


def test_a_locked_sqlite_database_is_waited_out_not_dead_lettered(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    url = f"sqlite:///{tmp_path}/locked.db"
    SqlStore(url).create_schema()
    store = SqlStore(f"{url}?timeout=0.05")
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    sleeps: list[float] = []

    async def release_after_two_retries(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            holder.execute("ROLLBACK")

    letters = DeadLetters()
    handler = make_handler(store, letters, registry)
    handler.sleep = release_after_two_retries
    try:
        asyncio.run(handler.handle([contact_message(1, "c1"), contact_message(2, "c2")]))
    finally:
        holder.close()
        store.dispose()
    assert sleeps == [0.5, 1.0]
    assert letters.sent == []
    assert [row["contact_id"] for row in dump_tables(url)["contacts"]] == ["c1", "c2"]
    assert sample(registry, "cxstream_sink_database_up") == 1.0


def test_a_batch_of_sessions_is_stored_with_its_schema_created_on_first_use(
    store: SqlStore, registry: CollectorRegistry
) -> None:
    name, record = session()
    message = Message(SESSIONS, 1, 0, b"s1", RecordCodec(name).encode(record))
    asyncio.run(make_handler(store, DeadLetters(), registry).handle([message]))
    assert [row["session_id"] for row in dump_tables(store.url)["sessions"]] == ["s1"]
