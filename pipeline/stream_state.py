"""How a partition's state sits in the worker's state table, without Kafka.

The table (and its compacted changelog) holds two kinds of entries per input
partition: each customer's state, compressed (:func:`encode_table_state`), and
the partition's :class:`Position` under its clock key, written last: its clock
and the offset (and checksum) of the last input record whose effects the state
holds. On a restart the position tells which redelivered records to skip
(:func:`is_redelivery`) and which offsets the consumer skipped
(:func:`offsets_missing_before`). :mod:`pipeline.streaming` writes and reads
these entries; :mod:`pipeline.runtime` restores them from the changelog.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import cramjam

from pipeline.core.partitioning import partition_for

#: Table key that holds a partition's position (customer ids never start with "__").
CLOCK_KEY_PREFIX = "__clock__:"


#: First byte of a customer state compressed with LZ4 (block format, the
#: uncompressed length in front), as this version writes it.
LZ4_STATE = b"l"
#: First byte of a zlib-compressed customer state (written before LZ4). A state
#: written by a still earlier version is plain JSON and starts with "{".
COMPRESSED_STATE = b"z"


def encode_table_state(state: bytes) -> bytes:
    """A customer's state as the table stores it: LZ4 after a marker byte.

    Every changed customer is written to the changelog once per batch, so the
    states are most of the bytes the worker sends and what a restart reads
    back; the JSON state (~3 kB after a few journeys on simulator traffic)
    shrinks to ~45%. LZ4 rather than zlib: zlib level 1 compressed to ~30% but
    cost ~6x the CPU, about a fifth of the worker's time per event
    (docs/benchmarks.md, "Against Kafka Streams").
    """
    return LZ4_STATE + bytes(cramjam.lz4.compress_block(state))


def decode_table_state(value: bytes) -> bytes:
    """The state in a table value: LZ4, zlib, or (an early version's) plain JSON."""
    marker = value[:1]
    if marker == LZ4_STATE:
        return bytes(cramjam.lz4.decompress_block(value[1:]))
    if marker == COMPRESSED_STATE:
        return zlib.decompress(value[1:])
    return value


def clock_key(partition: int) -> str:
    return f"{CLOCK_KEY_PREFIX}{partition}"


class Position(NamedTuple):
    """Where a partition's state stands: stored under its clock key, written last."""

    clock_ms: int | None
    #: Offset of the last input record whose effects the state holds.
    applied_offset: int | None = None
    #: :func:`record_crc` of that record: a recreated topic reuses offsets.
    applied_crc: int | None = None
    #: Offset of the last ``interactions-rekeyed`` record of the same partition
    #: whose effects the state holds (issue 16; None: none yet).
    rekeyed_offset: int | None = None
    #: The end of input waits for the partition's own end-of-input marker and
    #: every identity partition's (:mod:`pipeline.identity_wire`): whether the
    #: former came, with the input end it carried, and which of the latter came.
    input_ended: bool = False
    input_end_ms: int | None = None
    identity_ended: tuple[int, ...] = ()


def encode_position(position: Position) -> bytes:
    """The value stored under a partition's clock key."""
    return json.dumps(position._asdict()).encode()


def decode_position(value: bytes) -> Position:
    """The :class:`Position` in a clock-key value.

    Versions before 0.2 stored the bare clock (``b"1772438400000"``): it loads
    with no offset, and redelivered records fall back to event-id deduplication.
    """
    text = value.decode()
    if not text.startswith("{"):
        return Position(int(text))
    stored = json.loads(text)
    return Position(
        stored.get("clock_ms"),
        stored.get("applied_offset"),
        stored.get("applied_crc"),
        stored.get("rekeyed_offset"),
        bool(stored.get("input_ended", False)),
        stored.get("input_end_ms"),
        tuple(stored.get("identity_ended") or ()),
    )


def is_redelivery(applied_offsets: Mapping[int, int], partition: int, offset: int) -> bool:
    """Is the record at ``offset`` one whose effects the state already holds?"""
    applied = applied_offsets.get(partition)
    return applied is not None and offset <= applied


def offsets_missing_before(
    applied_offsets: Mapping[int, int], partition: int, offset: int
) -> tuple[int, int] | None:
    """``(start, end)``: the offsets between the last applied record and ``offset``.

    None when ``offset`` follows the last applied record directly (or is a
    redelivery, or nothing is known of the partition yet).
    """
    applied = applied_offsets.get(partition)
    if applied is None or offset <= applied + 1:
        return None
    return applied + 1, offset


def items_of_partition(
    partition: int, table_items: Iterable[tuple[Any, Any]], partitions: int
) -> Iterator[tuple[str, bytes]]:
    """The state-table entries of ``partition``: its customers and its position.

    The table holds the keys of every partition the worker owns; a partition's
    processor is built from its own only.
    """
    clock_name = clock_key(partition)
    for raw_key, value in table_items:
        if value is None:
            continue
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        if key.startswith(CLOCK_KEY_PREFIX):
            if key == clock_name:
                yield key, value
        elif partition_for(key, partitions) == partition:
            yield key, value


def record_crc(key: bytes | None, value: bytes | None) -> int:
    """A checksum of a record's key and value, to recognise it at its offset later."""
    return zlib.crc32(value or b"", zlib.crc32(b"\xff", zlib.crc32(key or b"")))
