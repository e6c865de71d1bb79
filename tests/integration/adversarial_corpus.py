"""The hostile input of the adversarial suite, and how it is mixed into simulator traffic.

:func:`build_corpus` returns every kind of bad record issue 12 names, each with
the stage the worker must dead-letter it at, plus the awkward records that are
*not* bad (a wrong or missing key is re-keyed, a duplicate id is dropped by the
core). :func:`interleave` mixes them into simulator traffic in one deterministic
send order. Valid bytes come from the project's own :class:`EventCodec` and are
then mutated, so the corpus follows the contract wherever it does not break it
on purpose.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pipeline.contract.codec import HEADER_LENGTH, MAGIC, EventCodec
from pipeline.contract.event import CUSTOMER_MESSAGE, InteractionEvent
from pipeline.contract.schemas import current
from pipeline.streaming import CONTROL_HEADER, END_OF_INPUT
from pipeline.tools.simulator import SimItem

# Stages of the dead-letter header ``cx.dlq.stage`` (see pipeline/dlq.py).
DECODE = "decode"
VALIDATE = "validate"
CONTROL = "control"

#: Every dead-letter case of the corpus and the stage it must fail at. The
#: NUL, future-date and oversized-attribute events decode; the validation rules
#: of issue 12 (control characters, length limits, max_future_skew) refuse them.
#: A negative enum index is a wire-level defect: the decoder must refuse it
#: before fastavro wraps it round to another symbol.
DEAD_LETTER_CASES: dict[str, str] = {
    "undecodable-1mib": DECODE,
    "attribute-of-300000-control-characters": VALIDATE,
    "nul-in-contact-id": VALIDATE,
    "nul-in-topic": VALIDATE,
    "dated-2099-12-31": VALIDATE,
    "negative-enum-index-in-type": DECODE,
    "forged-end-of-input": CONTROL,
    "random-bytes": DECODE,
    "empty-value": DECODE,
    "truncated-avro": DECODE,
    "unknown-schema-fingerprint": DECODE,
    "missing-fields": DECODE,
    "unknown-channel": VALIDATE,
    "dated-1970": VALIDATE,
    "json-instead-of-avro": DECODE,
    "simulator-malformed": DECODE,
}

#: Cases that must *not* be dead-lettered. A record keyed by anything but its
#: customer id (or by nothing) is re-published keyed by ``customer_id`` and
#: processed there (``StreamHandler._rekey``); a second record with an event id
#: already seen is dropped by the core's deduplication.
WRONG_KEY = "wrong-key"
NULL_KEY = "null-key"
DUPLICATE_ID = "duplicate-event-id"
REKEYED_CASES = (WRONG_KEY, NULL_KEY)

SIMULATOR_EVENT = "simulator-event"

ONE_MIB = 1 << 20
CONTROL_CHARACTERS = 300_000
FAR_FUTURE_MS = int(datetime(2099, 12, 31, 12, tzinfo=UTC).timestamp() * 1000)
IN_1970_MS = 86_400_000  # 1970-01-02: seconds-vs-milliseconds territory
# A negative enum index that plain fastavro reads as symbols[index], which is
# "agent_reply", a real symbol, so the defect is invisible after decoding (-5 in
# the 7 symbols of v1/v2, -7 in the 9 of v3: counted from the current schema).
_TYPE_SYMBOLS = next(
    f["type"]["symbols"] for f in current("interaction_event").raw["fields"] if f["name"] == "type"
)
NEGATIVE_TYPE_INDEX = _TYPE_SYMBOLS.index("agent_reply") - len(_TYPE_SYMBOLS)


@dataclass(frozen=True)
class AdversarialRecord:
    """One record the test sends to the input topic, and what must become of it.

    ``expected_stage`` is the dead-letter stage, None for a record that must be
    processed (``event`` is then the event the replay gets). ``partition`` None
    lets the producer partition by key. ``after_event_id`` places the record after
    that event in the send order; ``tail`` records go after everything else.
    """

    name: str
    key: bytes | None
    value: bytes | None
    expected_stage: str | None = None
    event: InteractionEvent | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None
    after_event_id: str | None = None
    tail: bool = False

    @property
    def is_bad(self) -> bool:
        return self.expected_stage is not None


def avro_long(value: int) -> bytes:
    """Avro's zig-zag varint encoding of a long (spec, "Binary Encoding")."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        if zigzag:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def avro_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return avro_long(len(raw)) + raw


def with_type_index(codec: EventCodec, event: InteractionEvent, index: int) -> bytes:
    """``event``'s single-object bytes with the ``type`` enum index replaced by ``index``.

    The fields before ``type`` (event_id, occurred_at, customer_id, channel,
    contact_id) are written by hand to find where the index sits in the codec's
    own output; everything after it is the codec's.
    """
    valid = codec.encode(event)
    prefix = (
        valid[:HEADER_LENGTH]
        + avro_string(event.event_id)
        + avro_long(event.occurred_at)
        + avro_string(event.customer_id)
        + avro_string(event.channel)
        + avro_string(event.contact_id)
    )
    assert valid.startswith(prefix), "the event schema's field order changed"
    original_index = avro_long(valid[len(prefix)] >> 1)  # indexes 0..6 take one byte
    assert valid[len(prefix) : len(prefix) + 1] == original_index
    return prefix + avro_long(index) + valid[len(prefix) + 1 :]


def _undecodable(rng: random.Random, size: int) -> bytes:
    """Random bytes that cannot start like a single-object record."""
    data = bytearray(rng.randbytes(size))
    data[0] = 0x7B  # "{", never the 0xC3 marker
    return bytes(data)


def build_corpus(
    sim_events: Sequence[InteractionEvent],
    *,
    partitions: int,
    codec: EventCodec | None = None,
    seed: int = 12,
) -> list[AdversarialRecord]:
    """Every bad (and awkward) record of issue 12, built around ``sim_events``.

    ``sim_events`` are the simulator's valid events in send order: a customer
    message among them is the template of the bad events (so only the defect
    differs from real traffic), and two of them are sent again as duplicates.
    Bad events use customer ids of their own. The re-keyed records belong to
    customers of their own too and are dated just after the last simulator
    event; they go at the tail, because the worker re-publishes them after
    their batch, and only as the last records of their target partition do
    they meet the same partition clock in the stream as in the replay.
    ``partitions`` is the input topic's partition count: the forged end-of-input
    goes to every partition, as the project's own marker does.
    """
    codec = codec or EventCodec()
    rng = random.Random(f"cxstream-adversarial-{seed}")
    template = next(e for e in sim_events if e.type == CUSTOMER_MESSAGE and e.topic)
    first_ms = min(e.occurred_at for e in sim_events)
    last_ms = max(e.occurred_at for e in sim_events)

    def bad_event(name: str, **changes: object) -> InteractionEvent:
        fields: dict[str, object] = {
            "event_id": f"adv-{name}",
            "customer_id": f"adv-{name}",
            "contact_id": f"adv-{name}-contact",
        }
        fields.update(changes)
        return replace(template, **fields)  # type: ignore[arg-type]

    def keyed(event: InteractionEvent) -> bytes:
        return event.customer_id.encode()

    def decode_case(name: str, value: bytes | None, key: bytes | None = None) -> AdversarialRecord:
        return AdversarialRecord(
            name, key or f"adv-{name}".encode(), value, DEAD_LETTER_CASES[name]
        )

    def event_case(name: str, event: InteractionEvent) -> AdversarialRecord:
        return AdversarialRecord(name, keyed(event), codec.encode(event), DEAD_LETTER_CASES[name])

    valid = codec.encode(bad_event("template"))
    records = [
        decode_case("undecodable-1mib", _undecodable(rng, ONE_MIB)),
        # Late as well (a day before the traffic), so if it were processed its
        # late-event record would carry the whole attribute, JSON-escaped.
        event_case(
            "attribute-of-300000-control-characters",
            bad_event(
                "attribute-of-300000-control-characters",
                occurred_at=first_ms - 24 * 3600 * 1000,
                attributes={"note": "\x01" * CONTROL_CHARACTERS},
            ),
        ),
        event_case("nul-in-contact-id", bad_event("nul-in-contact-id", contact_id="c-\x00-1")),
        event_case("nul-in-topic", bad_event("nul-in-topic", topic="cards\x00")),
        event_case("dated-2099-12-31", bad_event("dated-2099-12-31", occurred_at=FAR_FUTURE_MS)),
        decode_case(
            "negative-enum-index-in-type",
            with_type_index(codec, bad_event("negative-enum-index-in-type"), NEGATIVE_TYPE_INDEX),
        ),
        *(
            AdversarialRecord(
                "forged-end-of-input",
                b"__cxstream_control__",
                None,
                DEAD_LETTER_CASES["forged-end-of-input"],
                headers=((CONTROL_HEADER, END_OF_INPUT),),
                partition=partition,
            )
            for partition in range(partitions)
        ),
        *(decode_case("random-bytes", _undecodable(rng, size)) for size in (1, 17, 300)),
        decode_case("empty-value", b""),
        decode_case("truncated-avro", valid[: len(valid) // 2]),
        decode_case(
            "unknown-schema-fingerprint", MAGIC + bytes.fromhex("0badc0de0badc0de") + valid[10:]
        ),
        # The current fingerprint, but only the first two fields written.
        decode_case(
            "missing-fields",
            valid[:HEADER_LENGTH] + avro_string("adv-missing-fields") + avro_long(first_ms),
        ),
        event_case("unknown-channel", bad_event("unknown-channel", channel="carrier_pigeon")),
        event_case("dated-1970", bad_event("dated-1970", occurred_at=IN_1970_MS)),
        decode_case(
            "json-instead-of-avro",
            json.dumps(bad_event("json-instead-of-avro").to_json_dict()).encode(),
        ),
    ]

    for original in (sim_events[len(sim_events) // 3], sim_events[2 * len(sim_events) // 3]):
        records.append(
            AdversarialRecord(
                DUPLICATE_ID,
                keyed(original),
                codec.encode(original),
                event=original,
                after_event_id=original.event_id,
            )
        )

    tail_ms = last_ms + 60_000
    wrong = bad_event(WRONG_KEY, occurred_at=tail_ms)
    null = bad_event(NULL_KEY, occurred_at=tail_ms)
    records.append(
        AdversarialRecord(
            WRONG_KEY, b"not-the-customer", codec.encode(wrong), event=wrong, tail=True
        )
    )
    records.append(AdversarialRecord(NULL_KEY, None, codec.encode(null), event=null, tail=True))
    return records


def simulator_records(
    items: Iterable[SimItem], codec: EventCodec | None = None
) -> list[AdversarialRecord]:
    """Simulator items as records: events keyed by customer, malformed ones dead letters."""
    codec = codec or EventCodec()
    records = []
    for item in items:
        if item.event is not None:
            event = item.event
            records.append(
                AdversarialRecord(
                    SIMULATOR_EVENT, event.customer_id.encode(), codec.encode(event), event=event
                )
            )
        else:
            records.append(
                AdversarialRecord(
                    "simulator-malformed",
                    b"malformed",
                    item.malformed_bytes,
                    DEAD_LETTER_CASES["simulator-malformed"],
                )
            )
    return records


def interleave(
    traffic: Sequence[AdversarialRecord], corpus: Sequence[AdversarialRecord], seed: int = 12
) -> list[AdversarialRecord]:
    """One send order: ``corpus`` scattered through the middle of ``traffic``.

    Each corpus record goes after a random traffic record between 10 % and 90 %
    of the way (a duplicate somewhere after its original), so bad records hit
    partitions whose clocks are running and whose sessions are open. Tail
    records come last, in corpus order.
    """
    rng = random.Random(f"cxstream-interleave-{seed}")
    position_of = {r.event.event_id: i for i, r in enumerate(traffic) if r.event is not None}
    after: dict[int, list[AdversarialRecord]] = {}
    low, high = len(traffic) // 10, 9 * len(traffic) // 10
    for record in corpus:
        if record.tail:
            continue
        if record.after_event_id is not None:
            start = position_of[record.after_event_id]
            index = rng.randint(start, min(start + 50, len(traffic) - 1))
        else:
            index = rng.randint(low, high)
        after.setdefault(index, []).append(record)
    ordered: list[AdversarialRecord] = []
    for index, record in enumerate(traffic):
        ordered.append(record)
        ordered.extend(after.get(index, ()))
    ordered.extend(r for r in corpus if r.tail)
    return ordered
