"""The replay's JSON Lines in and out, fast and byte for byte as before.

Input: :func:`read_lines` reads a whole file and splits it into numbered lines
exactly as iterating the file in text mode did; :func:`decode_lines` turns them
into valid events and rejects (:func:`pipeline.contract.jsonform.parse_json_line`,
then the contract's rules).

Output: :func:`record_line` serialises an output record with orjson, straight from
its fields (no ``to_dict`` copy), into the bytes ``json.dumps(record.to_dict(),
ensure_ascii=False, separators=(",", ":"))`` writes; a record holding something
the two libraries write differently (a float below 1e-4 or not finite, an
integer past 64 bits, a lone surrogate) is written by ``json.dumps`` itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import orjson

from pipeline.contract.event import InteractionEvent
from pipeline.contract.jsonform import parse_json_line
from pipeline.contract.validate import validate
from pipeline.core.records import JourneySignal, OutputRecord, SessionRecord, SlaEvent
from pipeline.errors import ContractError
from pipeline.settings import Settings

# -- input ----------------------------------------------------------------------------

#: One line of the input: its number (1-based, blank lines counted) and its text
#: without the line end.
Line = tuple[int, str]


def read_lines(path: str | Path) -> list[Line]:
    """The numbered lines of ``path``, split as iterating it in text mode split
    them (``\\n``, ``\\r\\n`` and a lone ``\\r`` each end a line), without the line
    end. One read and one split instead of a ``readline`` per line; invalid UTF-8
    raises ``UnicodeDecodeError`` as text mode did."""
    text = Path(path).read_bytes().decode("utf-8")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the text ends with a line end (or is empty)
    return list(enumerate(lines, start=1))


def decode_lines(
    lines: Iterable[Line],
    settings: Settings,
    *,
    now_ms: int,
    max_future_ms: int,
) -> tuple[list[InteractionEvent], list[str]]:
    """The valid events of ``lines``, in order, and the rejected lines as
    ``rejected.jsonl`` lines (line number, stage, field, reason, the raw line)."""
    events: list[InteractionEvent] = []
    rejects: list[str] = []
    channels = settings.channels
    for number, line in lines:
        if not line.strip():
            continue
        try:
            events.append(
                validate(
                    parse_json_line(line),
                    channels,
                    now_ms=now_ms,
                    max_future_ms=max_future_ms,
                    # Issue 16: the replay routes them through its identity stage.
                    identity_events=True,
                )
            )
        except ContractError as error:
            reject = {
                "line": number,
                "stage": error.stage,
                "field": error.field,
                "reason": str(error),
                "raw": line,
            }
            rejects.append(json.dumps(reject, ensure_ascii=False) + "\n")
    return events, rejects


# -- output ---------------------------------------------------------------------------

# Python's float repr and orjson's agree for finite floats from 1e-4 up; below it
# Python writes 1e-05 where orjson writes 0.00001 or 1e-7, and orjson writes
# NaN and infinities as null.
_SMALLEST_SAME_FLOAT = 1e-4


def _float_same(value: Any) -> bool:
    return (
        type(value) is not float
        or value == 0.0
        or (abs(value) >= _SMALLEST_SAME_FLOAT and math.isfinite(value))
    )


def _nested_same(value: Any) -> bool:
    """Whether every float anywhere in ``value`` (lists, dicts) is written alike."""
    kind = type(value)
    if kind is float:
        return _float_same(value)
    if kind is list or kind is tuple:
        return all(map(_nested_same, value))
    if kind is dict:
        return all(map(_nested_same, value.values()))
    return True


class _RecordJson:
    """How one record class is written: field names, a getter of their values,
    and the positions of the fields to check before orjson may write them."""

    def __init__(self, cls: type) -> None:
        specs = fields(cls)
        self.names = tuple(spec.name for spec in specs)
        self.values: Callable[[Any], tuple[Any, ...]] = attrgetter(*self.names)
        self.floats = tuple(i for i, spec in enumerate(specs) if "float" in str(spec.type))
        # Containers of Any (feedback entries, a late event's JSON form) may hold floats.
        self.nested = tuple(i for i, spec in enumerate(specs) if "Any" in str(spec.type))

    def line(self, record: Any) -> bytes:
        values = self.values(record)
        # Plain loops, not all(<generator>): this runs once per output record.
        for i in self.floats:
            value = values[i]
            if type(value) is float and not _float_same(value):
                return self.reference_line(record)
        for i in self.nested:
            if not _nested_same(values[i]):
                return self.reference_line(record)
        try:
            # Not OPT_APPEND_NEWLINE: measured twice as slow as appending here.
            return orjson.dumps(dict(zip(self.names, values, strict=True))) + b"\n"
        except TypeError:  # an integer past 64 bits, a lone surrogate: json says it
            return self.reference_line(record)

    @staticmethod
    def reference_line(record: Any) -> bytes:
        text = json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8") + b"\n"


_WRITERS: dict[type, _RecordJson] = {}


def record_line(record: OutputRecord) -> bytes:
    """One output line (with its ``\\n``), the bytes the JSON Lines files hold."""
    writer = _WRITERS.get(type(record))
    if writer is None:
        writer = _WRITERS[type(record)] = _RecordJson(type(record))
    return writer.line(record)


#: A share's output lines: output name -> ``(order, lines)`` pairs, ``order``
#: being where the lines go in the one-process output (the input index of the
#: event that emitted them; past the input's end for the end of input).
ShareLines = dict[str, list[tuple[int, bytes]]]


def lines_by_output(
    ordered: Iterable[tuple[int, list[OutputRecord]]], names: Iterable[str]
) -> ShareLines:
    """The records, each group under its order value, as lines per output name."""
    lines: ShareLines = {name: [] for name in names}
    for order, records in ordered:
        if len(records) == 1:
            record = records[0]
            lines[record.OUTPUT_NAME].append((order, record_line(record)))
            continue
        blobs: dict[str, list[bytes]] = {}
        for record in records:
            blobs.setdefault(record.OUTPUT_NAME, []).append(record_line(record))
        for name, blob in blobs.items():
            lines[name].append((order, b"".join(blob)))
    return lines


def merged_lines(shares: Sequence[ShareLines], names: Mapping[str, str]) -> dict[str, list[bytes]]:
    """Each output's lines (in pieces): the shares' lines in the one-process order.

    Every order value belongs to one share (an event to the share of its
    partition), so sorting by it interleaves the shares' lines exactly.
    """
    outputs: dict[str, list[bytes]] = {}
    for name in names:
        pieces = sorted((piece for share in shares for piece in share[name]), key=itemgetter(0))
        outputs[name] = [blob for _, blob in pieces]
    return outputs


def summary_counts(records: Iterable[OutputRecord]) -> dict[str, int]:
    """What the replay's summary line says about its records."""
    counts = {"sessions": 0, "sla_breaches": 0, "journey_signals": 0}
    for r in records:
        if isinstance(r, SessionRecord) and r.status == "final":
            counts["sessions"] += 1
        elif isinstance(r, SlaEvent) and r.kind == "breach":
            counts["sla_breaches"] += 1
        elif isinstance(r, JourneySignal):
            counts["journey_signals"] += 1
    return counts
