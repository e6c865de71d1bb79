"""The ``interactions-rekeyed`` topic's records, without Kafka (issue 16).

What the identity processor gives a customer travels to the customer's
partition on ``<prefix>.interactions-rekeyed``, keyed by the customer (same key,
same partitioner, same partition count as the input, so it reaches the processor
that holds the customer). The header ``cx-identity`` says what a record is:

- ``release``: an event identity gave the customer; the value is the event in
  the contract's single-object encoding, ``customer_id`` set
  (:class:`~pipeline.core.identity_stage.CustomerEvent` with ``released``), and
  the header ``cx-identified-at`` the start of the link that gave it (epoch ms);
- ``unattribute``: identity takes events back from the customer; the value is
  JSON ``{"customer_id": ..., "event_ids": [...]}``
  (:class:`~pipeline.core.identity_stage.Unattribution`);
- ``end-of-input``: identity partition ``cx-identity-partition`` has ended its
  input (a backfill's end-of-input marker reached it) and released what it
  held; sent to every re-keyed partition, explicitly. A customer partition ends
  its input once its own marker and every identity partition's have arrived
  (:class:`IdentityEnd`), so the held events released as anonymous at the end are
  in, as in the replay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.contract.codec import EventCodec
from pipeline.core.identity_stage import CustomerEvent, Routed, Unattribution
from pipeline.errors import DecodeError

IDENTITY_HEADER = "cx-identity"
IDENTITY_PARTITION_HEADER = "cx-identity-partition"
IDENTIFIED_AT_HEADER = "cx-identified-at"
RELEASE = b"release"
UNATTRIBUTE = b"unattribute"
IDENTITY_END = b"end-of-input"

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class IdentityEnd:
    """Identity partition ``identity_partition`` ended its input at ``input_end_ms``."""

    identity_partition: int
    input_end_ms: int | None


@dataclass(frozen=True, slots=True)
class Wire:
    """One re-keyed record as it is sent: key, value, headers."""

    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def encode_routed(routed: Routed, codec: EventCodec) -> Wire:
    """The re-keyed record of a routed record (its key is the customer)."""
    key = routed.customer_key.encode()
    if isinstance(routed, CustomerEvent):
        headers: tuple[tuple[str, bytes], ...] = ((IDENTITY_HEADER, RELEASE),)
        if routed.identified_at is not None:
            headers += ((IDENTIFIED_AT_HEADER, str(routed.identified_at).encode("ascii")),)
        return Wire(key, codec.encode(routed.event), headers)
    value = json.dumps(
        {"customer_id": routed.customer_key, "event_ids": list(routed.event_ids)},
        separators=(",", ":"),
    ).encode()
    return Wire(key, value, ((IDENTITY_HEADER, UNATTRIBUTE),))


def end_marker(identity_partition: int, input_end_ms: int | None) -> Wire:
    """The end-of-input record identity partition ``identity_partition`` sends to every
    re-keyed partition (the sender sets the partition)."""
    value = b"" if input_end_ms is None else str(input_end_ms).encode("ascii")
    headers = (
        (IDENTITY_HEADER, IDENTITY_END),
        (IDENTITY_PARTITION_HEADER, str(identity_partition).encode("ascii")),
    )
    return Wire(b"__cxstream_identity_end__", value, headers)


def header(headers: Headers, name: str) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def decode_rekeyed(
    value: bytes | None, headers: Headers, codec: EventCodec
) -> CustomerEvent | Unattribution | IdentityEnd:
    """A re-keyed record back in memory; :class:`DecodeError` for anything else
    (a record on the topic that is not ours, or damaged)."""
    kind = header(headers, IDENTITY_HEADER)
    try:
        if kind == RELEASE:
            event = codec.decode(value or b"")
            if not event.customer_id:
                raise DecodeError("a released event without its customer")
            identified = header(headers, IDENTIFIED_AT_HEADER)
            at = None if identified is None else int(identified.decode("ascii"))
            return CustomerEvent(event, True, at)
        if kind == UNATTRIBUTE:
            body = json.loads(value or b"")
            return Unattribution(str(body["customer_id"]), tuple(map(str, body["event_ids"])))
        if kind == IDENTITY_END:
            partition = int((header(headers, IDENTITY_PARTITION_HEADER) or b"").decode("ascii"))
            return IdentityEnd(partition, int(value.decode("ascii")) if value else None)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"a re-keyed {kind!r} record that does not parse: {exc}") from exc
    raise DecodeError(f"a record without a known {IDENTITY_HEADER} header ({kind!r})")
