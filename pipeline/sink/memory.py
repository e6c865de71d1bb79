"""In-memory double of the SQL store, for unit tests of its callers.

It follows the same contract as :class:`pipeline.sink.store.SqlStore`: rows are
kept per table and natural key, the version rules of sessions and contacts apply, a batch is
all-or-nothing, and ``fail_next`` lets a test simulate an outage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.errors import SinkError
from pipeline.sink.models import ROW_WINS
from pipeline.sink.pseudonym import Pseudonymizer
from pipeline.sink.rows import Batch, rows_by_table
from pipeline.sink.store import WriteResult

_FIXED_NOW = datetime(1970, 1, 1, tzinfo=UTC)


class InMemorySink:
    """A :class:`~pipeline.sink.store.Sink` that keeps rows in dicts."""

    def __init__(self, *, pseudonymizer: Pseudonymizer | None = None) -> None:
        self._pseudonymizer = pseudonymizer
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}
        self.batches: list[list[tuple[str, Any]]] = []
        self.fail_next: list[SinkError] = []
        self.closed = False

    def write(self, batch: Batch) -> WriteResult:
        """Store the batch, or raise the first queued ``fail_next`` error storing nothing."""
        if self.closed:
            raise SinkError("the in-memory sink is closed")
        if self.fail_next:
            raise self.fail_next.pop(0)
        grouped = rows_by_table(batch, self._pseudonymizer, now=_FIXED_NOW)
        for table_name, rows in grouped.items():
            stored = self.tables.setdefault(table_name, {})
            for key, row in rows.items():
                old = stored.get(key)
                wins = ROW_WINS.get(table_name)
                if old is not None and wins is not None and not wins(row, old):
                    continue
                stored[key] = row
        self.batches.append(list(batch))
        return WriteResult(
            records=len(batch), rows={name: len(rows) for name, rows in grouped.items()}
        )

    def create_schema(self) -> None:
        """Nothing to create: tables appear on first write."""

    def rows(self, table_name: str) -> list[dict[str, Any]]:
        """The stored rows of one table, ordered by key."""
        stored = self.tables.get(table_name, {})
        return [stored[key] for key in sorted(stored)]

    def close(self) -> None:
        self.closed = True
