"""The business rules of the event contract, checked after decoding.

Decoding proves the bytes fit the schema; these rules prove the event makes sense.
:func:`validate` runs in the producer library (before anything is sent) and in the
worker (after decode); an event that fails goes to the dead-letter topic with the
rule it broke.

The limits below bound what one event can carry, so that nothing derived from it
(a late-event record, a dead letter, a SQL row) can grow past what Kafka or the
database accept, and no character that a database or a terminal treats specially
(NUL, escape sequences, lone surrogates that are not UTF-8) reaches them. They are
listed, with their reasons, in docs/producers.md ("Limits"). Lengths count
characters (code points), as ``len`` does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from pipeline.contract.event import (
    ACTORS,
    CONTACT_ENDED,
    CONTRACT_EVENT_TYPES,
    EVENT_TYPES,
    FEEDBACK,
    IDENTITY_EVENT_TYPES,
    NO_CUSTOMER,
    OUTCOMES,
    InteractionEvent,
    ms_to_iso,
)
from pipeline.errors import ValidationError
from pipeline.settings import ChannelRegistry

# Sane event-time bounds: a timestamp outside them is a unit bug (seconds or
# microseconds sent as milliseconds) or a default value, not a real contact.
MIN_OCCURRED_AT_MS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_OCCURRED_AT_MS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)
MIN_SCORE, MAX_SCORE = 0, 10
REQUIRED_IDS = ("event_id", "customer_id", "contact_id", "producer")

#: Longest id (event_id, customer_id, contact_id, producer, agent_id): room for a
#: UUID, a URN or a namespaced key, far from anything a real id needs.
MAX_ID_CHARS: Final = 200
#: Longest label (channel, topic) and attribute key.
MAX_LABEL_CHARS: Final = 100
#: Most entries in ``attributes``.
MAX_ATTRIBUTES: Final = 50
#: Longest attribute value.
MAX_ATTRIBUTE_VALUE_CHARS: Final = 1024
#: Most characters in ``attributes``, keys and values together. With the limits
#: above, an encoded event stays under about 40 KB even in 4-byte UTF-8.
MAX_ATTRIBUTES_TOTAL_CHARS: Final = 8192
#: Longest handling time a channel may report (v2 ``handling_seconds``): 7 days.
#: A contact is never handled that long; a larger value is a unit bug
#: (milliseconds sent as seconds) that would swamp every handling-time sum.
MAX_HANDLING_SECONDS: Final = 7 * 24 * 3600.0
#: Why a caller that does not route contract v3 identity events (no customer yet,
#: ``identified``, ``unlinked``) to the identity processor refuses them. The
#: worker, the replay and the producer library route them (issue 16) and pass
#: ``identity_events=True``.
IDENTITY_NOT_YET: Final = "identity events are not processed by this version yet"

# Fields checked as ids or labels: (name, longest, required).
_STRING_FIELDS: Final = (
    ("event_id", MAX_ID_CHARS, True),
    ("customer_id", MAX_ID_CHARS, True),
    ("contact_id", MAX_ID_CHARS, True),
    ("producer", MAX_ID_CHARS, True),
    ("channel", MAX_LABEL_CHARS, True),
    ("topic", MAX_LABEL_CHARS, False),
    ("agent_id", MAX_ID_CHARS, False),
)
# Contract v2 strings: optional, but when set they must say something (an empty
# need_id would merge every need of a customer into one), and the same length
# and character rules apply. The identifier is flat in Python, one field in Avro.
_V2_STRING_FIELDS: Final = (
    ("need_id", "need_id", MAX_ID_CHARS),
    ("queue", "queue", MAX_LABEL_CHARS),
    ("team", "team", MAX_LABEL_CHARS),
    ("identifier_kind", "identifier.kind", MAX_LABEL_CHARS),
    ("identifier_value", "identifier.value", MAX_ID_CHARS),
)
# C0 controls, DEL, C1 controls and lone surrogates (never valid UTF-8). Ids and
# labels may hold none of them; free text (attribute values) keeps tab, newline
# and carriage return.
_NOT_IN_IDS: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NOT_IN_TEXT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _fail(field: str, message: str) -> ValidationError:
    return ValidationError(f"{field}: {message}", field=field)


def _seconds(ms: int) -> str:
    """Milliseconds as seconds, exact and without an exponent: 300000 -> '300'."""
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".")


def _forbidden(value: str, pattern: re.Pattern[str]) -> str | None:
    """Describe the first character of ``value`` that ``pattern`` forbids, or None."""
    # isprintable() is a fast C scan that is True for nearly every real string and
    # implies there is nothing to forbid; only the rest pay for the regex.
    if value.isprintable():
        return None
    found = pattern.search(value)
    if found is None:
        return None
    code = ord(found.group())
    kind = "lone surrogate" if 0xD800 <= code <= 0xDFFF else "control character"
    return f"{kind} U+{code:04X} at position {found.start()}"


def _strings_look_fine(e: InteractionEvent) -> bool:
    """The hot path: True if every id and label is certainly within the rules.

    validate() runs on every event in the worker and the replay; one join and one
    C-level printable scan cost less than the field-by-field checks, which only
    run (to name the field) when this says no.
    """
    try:
        joined = "".join(
            (e.event_id, e.customer_id, e.contact_id, e.producer, e.channel, e.topic or "")
        )
        if e.agent_id is not None:
            joined += e.agent_id
    except TypeError:  # a field that is not a string
        return False
    if not joined.isprintable():
        return False
    if len(joined) <= MAX_LABEL_CHARS:  # then no one string can be over its limit
        return bool(
            e.event_id
            and e.customer_id
            and e.contact_id
            and e.producer
            and not e.event_id.isspace()
            and not e.customer_id.isspace()
            and not e.contact_id.isspace()
            and not e.producer.isspace()
        )
    return (
        0 < len(e.event_id) <= MAX_ID_CHARS
        and 0 < len(e.customer_id) <= MAX_ID_CHARS
        and 0 < len(e.contact_id) <= MAX_ID_CHARS
        and 0 < len(e.producer) <= MAX_ID_CHARS
        and len(e.channel) <= MAX_LABEL_CHARS
        and (e.topic is None or len(e.topic) <= MAX_LABEL_CHARS)
        and (e.agent_id is None or len(e.agent_id) <= MAX_ID_CHARS)
        and not e.event_id.isspace()
        and not e.customer_id.isspace()
        and not e.contact_id.isspace()
        and not e.producer.isspace()
    )


def _check_strings(event: InteractionEvent) -> None:
    """Raise for the first id or label that breaks a rule, naming it."""
    for name, longest, required in _STRING_FIELDS:
        value = getattr(event, name)
        if value is None and not required:
            continue
        if name == "customer_id" and value == NO_CUSTOMER:
            if event.identifier_kind is None and event.identifier_value is None:
                raise _fail(name, "must be a non-empty string (or empty with an identifier, v3)")
            continue  # contract v3: the customer is not known yet; the identifier is checked
        if not isinstance(value, str) or (required and not value.strip()):
            raise _fail(name, "must be a non-empty string" if required else "must be a string")
        if len(value) > longest:
            raise _fail(name, f"{len(value)} characters, over the limit of {longest}")
        bad = _forbidden(value, _NOT_IN_IDS)
        if bad:
            raise _fail(name, f"{bad}; ids and labels must not contain control characters")


def _check_attributes(attributes: Mapping[str, str]) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        raise _fail("attributes", f"{len(attributes)} entries, over the limit of {MAX_ATTRIBUTES}")
    total = 0
    for key, value in attributes.items():
        if (
            type(key) is str
            and type(value) is str
            and len(key) <= MAX_LABEL_CHARS
            and len(value) <= MAX_ATTRIBUTE_VALUE_CHARS
            and key.isprintable()
            and value.isprintable()
        ):
            total += len(key) + len(value)
            continue
        # Something is wrong or unusual (a tab in a value is fine): find what.
        if not isinstance(key, str):
            raise _fail("attributes", f"key {key!r} must be a string")
        shown = repr(key if len(key) <= 20 else key[:20] + "...")
        if len(key) > MAX_LABEL_CHARS:
            raise _fail(
                "attributes",
                f"key {shown} is {len(key)} characters, over the limit of {MAX_LABEL_CHARS}",
            )
        bad = _forbidden(key, _NOT_IN_IDS)
        if bad:
            raise _fail(
                "attributes", f"key {shown} has {bad}; keys must not contain control characters"
            )
        if not isinstance(value, str):
            raise _fail(
                "attributes", f"value of {shown} must be a string, not {type(value).__name__}"
            )
        if len(value) > MAX_ATTRIBUTE_VALUE_CHARS:
            raise _fail(
                "attributes",
                f"value of {shown} is {len(value)} characters, "
                f"over the limit of {MAX_ATTRIBUTE_VALUE_CHARS}",
            )
        bad = _forbidden(value, _NOT_IN_TEXT)
        if bad:
            raise _fail(
                "attributes",
                f"value of {shown} has {bad}; only tab, newline and carriage return are allowed",
            )
        total += len(key) + len(value)
    if total > MAX_ATTRIBUTES_TOTAL_CHARS:
        raise _fail(
            "attributes",
            f"keys and values total {total} characters, "
            f"over the limit of {MAX_ATTRIBUTES_TOTAL_CHARS}",
        )


def _check_v2_fields(event: InteractionEvent) -> None:
    """The rules for the fields contract version 2 added; raise naming the field."""
    if (event.identifier_kind is None) != (event.identifier_value is None):
        raise _fail("identifier", "kind and value must be given together")
    for attribute, name, longest in _V2_STRING_FIELDS:
        value = getattr(event, attribute)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise _fail(name, "must be a non-empty string when set")
        if len(value) > longest:
            raise _fail(name, f"{len(value)} characters, over the limit of {longest}")
        bad = _forbidden(value, _NOT_IN_IDS)
        if bad:
            raise _fail(name, f"{bad}; ids and labels must not contain control characters")
    seconds = event.handling_seconds
    if seconds is not None:
        if event.type != CONTACT_ENDED:
            raise _fail(
                "handling_seconds", f"is only allowed on contact_ended, not on {event.type}"
            )
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise _fail("handling_seconds", f"must be a number of seconds, not {seconds!r}")
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_HANDLING_SECONDS:
            raise _fail(
                "handling_seconds",
                f"{seconds!r} is outside 0..{MAX_HANDLING_SECONDS:.0f} (7 days); "
                "is it in milliseconds instead of seconds?",
            )


def validate(
    event: InteractionEvent,
    channels: ChannelRegistry,
    *,
    now_ms: int | None = None,
    max_future_ms: int | None = None,
    identity_events: bool = False,
) -> InteractionEvent:
    """Return ``event`` unchanged if it follows the contract's rules.

    Contract v3: an event needs ``customer_id`` or an identifier (or both);
    ``identified`` and ``unlinked`` need both. Such identity events
    (:func:`pipeline.contract.event.needs_identity`) are refused after those rules
    with :data:`IDENTITY_NOT_YET` unless ``identity_events`` is true: only a caller
    that routes them to the identity processor may accept them, so no path keys
    an event without a customer by an empty customer id.

    With ``now_ms`` and ``max_future_ms`` both given, an event dated more than
    ``max_future_ms`` after ``now_ms`` is refused (``limits.max_future_skew``):
    one mis-set device clock would otherwise move its partition's clock ahead
    and make every later event on it late.

    Raises :class:`ValidationError` whose ``field`` (and message prefix) names the
    first field that breaks a rule. The ``unknown`` type is refused: it is only
    the reader's stand-in for a symbol from a newer schema, never a thing to send.
    """
    if not _strings_look_fine(event):
        _check_strings(event)
    if event.channel not in channels:
        raise _fail(
            "channel",
            f"{event.channel!r} is not in the channel registry "
            f"({', '.join(channels.keys)}); add it to the config first",
        )
    if event.type not in EVENT_TYPES:
        if event.type not in IDENTITY_EVENT_TYPES:
            raise _fail("type", f"{event.type!r} is not one of {', '.join(CONTRACT_EVENT_TYPES)}")
        if event.customer_id == NO_CUSTOMER or event.identifier_kind is None:
            raise _fail(
                "type", f"{event.type} needs both customer_id and identifier (kind and value)"
            )
    if event.actor not in ACTORS:
        raise _fail("actor", f"{event.actor!r} is not one of {', '.join(ACTORS)}")
    if event.outcome is not None:
        if event.type != CONTACT_ENDED:
            raise _fail("outcome", f"is only allowed on contact_ended, not on {event.type}")
        if event.outcome not in OUTCOMES:
            raise _fail("outcome", f"{event.outcome!r} is not one of {', '.join(OUTCOMES)}")
    if event.score is not None:
        if event.type != FEEDBACK:
            raise _fail("score", f"is only allowed on feedback, not on {event.type}")
        if isinstance(event.score, bool) or not MIN_SCORE <= event.score <= MAX_SCORE:
            raise _fail("score", f"{event.score!r} is outside {MIN_SCORE}..{MAX_SCORE}")
    if not isinstance(event.occurred_at, int) or isinstance(event.occurred_at, bool):
        raise _fail("occurred_at", "must be integer epoch milliseconds")
    if not MIN_OCCURRED_AT_MS <= event.occurred_at < MAX_OCCURRED_AT_MS:
        raise _fail(
            "occurred_at",
            f"{event.occurred_at} ms is outside the years 2000..2099; "
            "is it in seconds or microseconds instead of milliseconds?",
        )
    if (
        now_ms is not None
        and max_future_ms is not None
        and event.occurred_at > now_ms + max_future_ms
    ):
        raise _fail(
            "occurred_at",
            f"{ms_to_iso(event.occurred_at)} is {_seconds(event.occurred_at - now_ms)} s "
            f"ahead of the wall clock, over limits.max_future_skew ({_seconds(max_future_ms)} s); "
            "is the producer's clock set right?",
        )
    if event.attributes:
        _check_attributes(event.attributes)
    if (
        event.need_id is not None
        or event.queue is not None
        or event.team is not None
        or event.handling_seconds is not None
        or event.identifier_kind is not None
        or event.identifier_value is not None
    ):
        _check_v2_fields(event)
    if not identity_events:
        if event.customer_id == NO_CUSTOMER:
            raise _fail(
                "customer_id", f"absent, the event has only an identifier; {IDENTITY_NOT_YET}"
            )
        if event.type in IDENTITY_EVENT_TYPES:
            raise _fail("type", f"{event.type}: {IDENTITY_NOT_YET}")
    return event
