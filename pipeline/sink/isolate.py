"""Find the records a database refuses by splitting their batch, and store the rest.

A batch is one transaction, so one refused record (a NUL byte in a text column,
a value out of range) fails all of it. :func:`write_isolating` then writes the
two halves, each its own transaction, and splits further whichever half fails
again, down to single records: k refused records among n cost about
``1 + 2 k log2 n`` writes, and a batch the database accepts costs one. Splitting
is safe because every write is an idempotent upsert and the halves are written
in batch order, so a key's later record still lands last.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pipeline.errors import SinkRejectedError
from pipeline.sink.rows import Batch
from pipeline.sink.store import Sink, WriteResult


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record of the batch the store refused on its own: its index and why."""

    index: int
    error: SinkRejectedError


@dataclass(frozen=True, slots=True)
class IsolatedWrite:
    """What :func:`write_isolating` stored, and the records it could not."""

    result: WriteResult
    rejected: tuple[Rejected, ...] = ()


def write_isolating(sink: Sink, batch: Batch) -> IsolatedWrite:
    """Write ``batch``; if the store rejects it, store every record it accepts.

    Returns once every record is either stored or in ``rejected`` (batch order).
    Any error other than :class:`SinkRejectedError` (an outage) propagates, with
    the parts written so far stored: writing the whole batch again is safe.
    """
    stored: list[WriteResult] = []
    rejected: list[Rejected] = []

    def write(start: int, end: int) -> None:
        try:
            stored.append(sink.write(batch[start:end]))
        except SinkRejectedError as exc:
            if end - start == 1:
                rejected.append(Rejected(start, exc))
                return
            middle = (start + end) // 2
            write(start, middle)
            write(middle, end)

    write(0, len(batch))
    if len(stored) == 1:
        return IsolatedWrite(stored[0], tuple(rejected))
    rows: Counter[str] = Counter()
    for result in stored:
        rows.update(result.rows)
    total = WriteResult(records=sum(result.records for result in stored), rows=dict(rows))
    return IsolatedWrite(total, tuple(rejected))
