"""The business rules of the event contract, checked after decoding.

Decoding proves the bytes fit the schema; these rules prove the event makes sense.
:func:`validate` runs in the producer library (before anything is sent) and in the
worker (after decode); an event that fails goes to the dead-letter topic with the
rule it broke.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.contract.event import (
    ACTORS,
    CONTACT_ENDED,
    EVENT_TYPES,
    FEEDBACK,
    OUTCOMES,
    InteractionEvent,
)
from pipeline.errors import ValidationError
from pipeline.settings import ChannelRegistry

# Sane event-time bounds: a timestamp outside them is a unit bug (seconds or
# microseconds sent as milliseconds) or a default value, not a real contact.
MIN_OCCURRED_AT_MS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_OCCURRED_AT_MS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)
MIN_SCORE, MAX_SCORE = 0, 10
REQUIRED_IDS = ("event_id", "customer_id", "contact_id", "producer")


def _fail(field: str, message: str) -> ValidationError:
    return ValidationError(f"{field}: {message}", field=field)


def validate(
    event: InteractionEvent,
    channels: ChannelRegistry,
    *,
    now_ms: int | None = None,
    max_future_ms: int | None = None,
) -> InteractionEvent:
    """Return ``event`` unchanged if it follows the contract's rules.

    With ``now_ms`` and ``max_future_ms`` both given, an event dated more than
    ``max_future_ms`` after ``now_ms`` is refused (``limits.max_future_skew``):
    one mis-set device clock would otherwise move its partition's clock ahead
    and make every later event on it late.

    Raises :class:`ValidationError` whose ``field`` (and message prefix) names the
    first field that breaks a rule. The ``unknown`` type is refused: it is only
    the reader's stand-in for a symbol from a newer schema, never a thing to send.
    """
    for name in REQUIRED_IDS:
        value = getattr(event, name)
        if not isinstance(value, str) or not value.strip():
            raise _fail(name, "must be a non-empty string")
    if event.channel not in channels:
        raise _fail(
            "channel",
            f"{event.channel!r} is not in the channel registry "
            f"({', '.join(channels.keys)}); add it to the config first",
        )
    if event.type not in EVENT_TYPES:
        raise _fail("type", f"{event.type!r} is not one of {', '.join(EVENT_TYPES)}")
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
            f"{event.occurred_at} ms is more than {max_future_ms} ms ahead of the wall clock "
            f"({now_ms} ms); is the producer's clock set right?",
        )
    return event
