"""The interaction event: the one record every channel producer sends.

Inside cxstream an event is an immutable :class:`InteractionEvent`. Event time is
kept as integer epoch milliseconds (UTC) everywhere in the domain logic: integer
arithmetic is exact (no float drift between the streaming path and the replay)
and cheap. The JSON form (files, docs, ``replay``) writes ``occurred_at`` as
ISO-8601 with an explicit offset; the Avro form uses ``timestamp-millis``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.errors import ValidationError
from pipeline.slot_init import slot_setting_init

# Event types. Strings rather than an enum class so that a producer on a newer
# contract version with a new type still decodes (the Avro enum has a default
# symbol) and the core can ignore what it does not know.
CONTACT_STARTED: Final = "contact_started"
CUSTOMER_MESSAGE: Final = "customer_message"
AGENT_REPLY: Final = "agent_reply"
TRANSFERRED: Final = "transferred"
CONTACT_ENDED: Final = "contact_ended"
FEEDBACK: Final = "feedback"
UNKNOWN_TYPE: Final = "unknown"
#: The types the stream core processes (a customer's contact).
EVENT_TYPES = (
    CONTACT_STARTED,
    CUSTOMER_MESSAGE,
    AGENT_REPLY,
    TRANSFERRED,
    CONTACT_ENDED,
    FEEDBACK,
)
# Contract v3: identity events. ``identified``: the identifier belongs to the
# customer from ``occurred_at`` on; ``unlinked``: that link was wrong. Both carry
# ``customer_id`` and the identifier, and go to the identity processor
# (pipeline/core/identity.py), never to the stream core.
IDENTIFIED: Final = "identified"
UNLINKED: Final = "unlinked"
IDENTITY_EVENT_TYPES = (IDENTIFIED, UNLINKED)
#: Every type a producer may send.
CONTRACT_EVENT_TYPES = (*EVENT_TYPES, *IDENTITY_EVENT_TYPES)
#: ``customer_id`` of an event whose channel does not know the customer yet
#: (contract v3; the identifier is then set). Empty, not None: the Avro field is a
#: string in every version, so readers on v1 and v2 still read v3 bytes.
NO_CUSTOMER: Final = ""

# Actors.
CUSTOMER: Final = "customer"
AGENT: Final = "agent"
BOT: Final = "bot"
SYSTEM: Final = "system"
ACTORS = (CUSTOMER, AGENT, BOT, SYSTEM)

# Outcomes, only on contact_ended.
RESOLVED: Final = "resolved"
UNRESOLVED: Final = "unresolved"
ABANDONED: Final = "abandoned"
OUTCOME_TRANSFERRED: Final = "transferred"
OUTCOMES = (RESOLVED, UNRESOLVED, ABANDONED, OUTCOME_TRANSFERRED)

EPOCH_MS_PER_SECOND: Final = 1000


@slot_setting_init
@dataclass(frozen=True, slots=True)
class InteractionEvent:
    """One thing that happened in one contact of one customer.

    ``occurred_at`` is UTC epoch milliseconds (event time). The fields after
    ``producer`` arrived with contract version 2 and are None on a v1 event. The
    channel identifier is flat here (``identifier_kind``/``identifier_value``, both
    set or both None) and a nested ``ChannelIdentifier`` record in Avro and JSON.
    Since version 3 ``customer_id`` is :data:`NO_CUSTOMER` (empty) when the channel
    knows the customer only by the identifier (:func:`needs_identity`).
    """

    event_id: str
    occurred_at: int
    customer_id: str
    channel: str
    contact_id: str
    type: str
    actor: str
    outcome: str | None = None
    topic: str | None = None
    agent_id: str | None = None
    score: int | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    producer: str = "unknown"
    need_id: str | None = None
    queue: str | None = None
    team: str | None = None
    handling_seconds: float | None = None
    identifier_kind: str | None = None
    identifier_value: str | None = None

    @property
    def occurred_at_datetime(self) -> datetime:
        return ms_to_datetime(self.occurred_at)

    def to_record(self) -> dict[str, Any]:
        """The Avro-shaped dict (``occurred_at`` as epoch milliseconds)."""
        return {
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "customer_id": self.customer_id,
            "channel": self.channel,
            "contact_id": self.contact_id,
            "type": self.type,
            "actor": self.actor,
            "outcome": self.outcome,
            "topic": self.topic,
            "agent_id": self.agent_id,
            "score": self.score,
            "attributes": dict(self.attributes),
            "producer": self.producer,
            "need_id": self.need_id,
            "queue": self.queue,
            "team": self.team,
            "handling_seconds": self.handling_seconds,
            "identifier": self.identifier,
        }

    @property
    def identifier(self) -> dict[str, str] | None:
        """The channel identifier as the v2 record ``{"kind", "value"}``, or None."""
        if self.identifier_kind is None and self.identifier_value is None:
            return None
        return {"kind": self.identifier_kind or "", "value": self.identifier_value or ""}

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form: schema field names, ``occurred_at`` as ISO-8601 with offset.

        Version 2 fields are written only when set, so a v1-shaped event keeps its
        v1 JSON byte for byte (late-event records, DLQ entries and replay files
        written before v2 do not change).
        """
        record = self.to_record()
        record["occurred_at"] = ms_to_iso(self.occurred_at)
        if self.customer_id == NO_CUSTOMER:
            record["customer_id"] = None  # v3: not known yet; JSON says so with null
        for name in V2_FIELDS:
            if record[name] is None:
                del record[name]
        return record


# The fields contract version 2 appended after ``producer`` (Avro and JSON names).
V2_FIELDS: Final = ("need_id", "queue", "team", "handling_seconds", "identifier")


def needs_identity(event: InteractionEvent) -> bool:
    """Whether ``event`` is for the identity processor, not (yet) for a customer.

    True for an event without a customer (contract v3, identifier only) and for
    ``identified`` and ``unlinked``. Events with a customer and an identifier
    beside it are ordinary events of that customer.
    """
    return event.customer_id == NO_CUSTOMER or event.type in IDENTITY_EVENT_TYPES


#: Prefix of the input-topic key of an event for the identity processor:
#: ``id:<kind>:<value>`` (no customer id starts with it). One identifier's events,
#: its ``identified`` and ``unlinked`` among them, then stay ordered on one partition.
IDENTITY_KEY_PREFIX: Final = "id:"


def record_key(event: InteractionEvent) -> str:
    """The input-topic key of ``event``: ``id:<kind>:<value>`` when it
    :func:`needs_identity` (the producer library sends it so, the worker forwards
    it to the ``identity`` topic under the same key), else its ``customer_id``."""
    if needs_identity(event) and event.identifier_kind is not None:
        return f"{IDENTITY_KEY_PREFIX}{event.identifier_kind}:{event.identifier_value}"
    return event.customer_id


def ms_to_datetime(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / EPOCH_MS_PER_SECOND, tz=UTC)


def ms_to_iso(epoch_ms: int) -> str:
    """ISO-8601 in UTC with millisecond precision, e.g. ``2026-03-02T08:15:00.250+00:00``."""
    return ms_to_datetime(epoch_ms).isoformat(timespec="milliseconds")


def iso_to_ms(text: str) -> int:
    """Parse ISO-8601 *with* an offset into epoch milliseconds.

    A timestamp without an offset is ambiguous (Helsinki or UTC?), so it is
    refused rather than guessed.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"occurred_at: {text!r} is not an ISO-8601 timestamp", field="occurred_at"
        ) from exc
    if parsed.tzinfo is None:
        raise ValidationError(
            f"occurred_at: {text!r} has no UTC offset; write e.g. 2026-03-02T08:15:00+02:00",
            field="occurred_at",
        )
    return int(parsed.timestamp() * EPOCH_MS_PER_SECOND)


def event_from_record(record: Mapping[str, Any]) -> InteractionEvent:
    """Build an event from an Avro-shaped dict (as fastavro returns it).

    ``occurred_at`` may be epoch milliseconds or an aware ``datetime``.
    """
    occurred_at = record["occurred_at"]
    if isinstance(occurred_at, datetime):
        occurred_at = int(occurred_at.timestamp() * EPOCH_MS_PER_SECOND)
    identifier = record.get("identifier")
    return InteractionEvent(
        event_id=record["event_id"],
        occurred_at=occurred_at,
        customer_id=record["customer_id"],
        channel=record["channel"],
        contact_id=record["contact_id"],
        type=record["type"],
        actor=record["actor"],
        outcome=record.get("outcome"),
        topic=record.get("topic"),
        agent_id=record.get("agent_id"),
        score=record.get("score"),
        attributes=record.get("attributes") or {},
        producer=record.get("producer") or "unknown",
        need_id=record.get("need_id"),
        queue=record.get("queue"),
        team=record.get("team"),
        handling_seconds=record.get("handling_seconds"),
        identifier_kind=identifier["kind"] if identifier else None,
        identifier_value=identifier["value"] if identifier else None,
    )
