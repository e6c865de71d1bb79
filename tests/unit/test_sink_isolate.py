"""Splitting a rejected batch until every refused record is found (SQLite and a double)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import SinkRejectedError, SinkUnavailableError
from pipeline.sink.isolate import write_isolating
from pipeline.sink.memory import InMemorySink
from pipeline.sink.rows import Batch
from pipeline.sink.store import SqlStore, WriteResult, dump_tables
from tests.unit.test_sink_store import MINUTE, T0, contact


class RefusingSink(InMemorySink):
    """Refuses any batch holding a contact whose id is in ``refused``; counts writes."""

    def __init__(self, refused: set[str], *, outage_after: int | None = None) -> None:
        super().__init__()
        self.refused = refused
        self.outage_after = outage_after
        self.writes: list[int] = []

    def write(self, batch: Batch) -> WriteResult:
        self.writes.append(len(batch))
        if self.outage_after is not None and len(self.writes) > self.outage_after:
            raise SinkUnavailableError("SQL store unreachable: connection refused")
        bad = [record["contact_id"] for _, record in batch if record["contact_id"] in self.refused]
        if bad:
            raise SinkRejectedError(f"SQL store rejected the data: {bad[0]}")
        return super().write(batch)


def contacts(count: int) -> list[tuple[str, dict[str, Any]]]:
    return [contact(f"c{i:03}", "chat", T0 + i * MINUTE, "resolved", 5.0) for i in range(count)]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore(f"sqlite:///{tmp_path}/isolate.db")
    store.create_schema()
    yield store
    store.dispose()


def test_a_batch_the_store_accepts_is_written_once() -> None:
    sink = RefusingSink(set())
    outcome = write_isolating(sink, contacts(8))
    assert sink.writes == [8]
    assert outcome.rejected == ()
    assert (outcome.result.records, dict(outcome.result.rows)) == (8, {"contacts": 8})


def test_two_refused_records_are_found_and_every_other_record_is_stored() -> None:
    sink = RefusingSink({"c003", "c012"})
    outcome = write_isolating(sink, contacts(16))
    assert [rejected.index for rejected in outcome.rejected] == [3, 12]
    assert [str(rejected.error) for rejected in outcome.rejected] == [
        "SQL store rejected the data: c003",
        "SQL store rejected the data: c012",
    ]
    stored = [row["contact_id"] for row in sink.rows("contacts")]
    assert stored == [f"c{i:03}" for i in range(16) if i not in (3, 12)]
    assert outcome.result.records == 14
    assert dict(outcome.result.rows) == {"contacts": 14}


def test_bisecting_one_refused_record_in_1024_costs_a_write_per_halving() -> None:
    """Binary search: 1 + 2 per level (log2 1024 = 10), not one write per record."""
    sink = RefusingSink({"c700"})
    outcome = write_isolating(sink, contacts(1024))
    assert [rejected.index for rejected in outcome.rejected] == [700]
    assert len(sink.writes) == 1 + 2 * 10


def test_every_record_refused_rejects_each_one_in_batch_order() -> None:
    sink = RefusingSink({f"c{i:03}" for i in range(5)})
    outcome = write_isolating(sink, contacts(5))
    assert [rejected.index for rejected in outcome.rejected] == [0, 1, 2, 3, 4]
    assert outcome.result.records == 0
    assert sink.rows("contacts") == []


def test_an_outage_while_bisecting_propagates_for_the_caller_to_retry() -> None:
    sink = RefusingSink({"c001"}, outage_after=2)
    with pytest.raises(SinkUnavailableError):
        write_isolating(sink, contacts(8))


def test_sqlite_stores_the_good_records_and_rejects_values_it_cannot_bind(
    sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """The stats of the good records equal those of a database given only them."""
    batch = contacts(20)
    name, record = batch[4]
    batch[4] = (name, {**record, "events": 2**63})  # over SQLite's INTEGER range
    name, record = batch[15]
    batch[15] = (name, {**record, "started_at": 2**62})  # beyond any datetime
    outcome = write_isolating(sqlite_store, batch)

    assert [rejected.index for rejected in outcome.rejected] == [4, 15]
    assert [type(rejected.error) for rejected in outcome.rejected] == [SinkRejectedError] * 2
    good = [item for index, item in enumerate(batch) if index not in (4, 15)]
    only_good = SqlStore(f"sqlite:///{tmp_path}/only-good.db")
    only_good.create_schema()
    only_good.write(good)
    only_good.dispose()
    assert dump_tables(sqlite_store.url) == dump_tables(only_good.url)
    assert len(dump_tables(sqlite_store.url)["contacts"]) == 18
