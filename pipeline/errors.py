"""The one exception hierarchy of cxstream.

Every error that cxstream raises on purpose derives from :class:`CxstreamError`,
so callers can catch the project's errors without catching library internals.
Library exceptions (fastavro, kafka-python, SQLAlchemy) are translated at the seam
that calls the library (``raise ContractError(...) from exc``).

::

    CxstreamError
     +-- ConfigError            bad settings, policy or channel configuration
     +-- InputFileError         a file named on the command line is missing or not a file
     +-- ContractError          an event (or output record) breaks the event contract
     |    +-- DecodeError       bytes are not a readable single-object Avro record
     |    |    +-- UnknownSchemaError   the fingerprint names no schema version we know
     |    +-- ValidationError   decoded, but a field breaks a rule (names the field)
     |    +-- CompatibilityError        a schema version breaks FULL_TRANSITIVE
     +-- StateError             a stored per-customer state cannot be read
     +-- DeliveryError          Kafka did not acknowledge a record we sent
     +-- RecordTooLargeError    a record we would send exceeds limits.max_record_bytes
     +-- ControlRecordRefused   a control record arrived where they are switched off
     +-- BrokerError            the local Kafka launcher could not fetch/start/stop
     +-- KafkaAuthError         Kafka refused our SASL login or TLS handshake (no retry)
     +-- SinkError              the SQL store failed a batch (schema, permissions): retry
          +-- SinkUnavailableError      the store cannot be reached or is busy (retry later)
          +-- SinkRejectedError         the store refuses this data (dead-letter the record)
"""

from __future__ import annotations


class CxstreamError(Exception):
    """Base class of every error cxstream raises on purpose."""


class ConfigError(CxstreamError):
    """Settings, SLA policies, calendars or the channel registry are invalid."""


class InputFileError(CxstreamError):
    """A file named on the command line is missing, a directory or unreadable."""


class ContractError(CxstreamError):
    """An event or record does not follow the event contract.

    ``stage`` names where it was caught (``decode`` or ``validate``); it goes
    into the dead-letter headers so a producer team sees where its event failed.
    """

    stage = "contract"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DecodeError(ContractError):
    """The bytes are not a readable Avro single-object encoded record."""

    stage = "decode"


class UnknownSchemaError(DecodeError):
    """The record's schema fingerprint matches no version in ``schemas/``."""


class ValidationError(ContractError):
    """The record decoded, but a field breaks a contract rule."""

    stage = "validate"


class CompatibilityError(ContractError):
    """A stored schema version and the current one cannot read each other."""

    stage = "compatibility"


class StateError(CxstreamError):
    """A per-customer state from the changelog has a version this build cannot read."""


class DeliveryError(CxstreamError):
    """Kafka did not acknowledge a record that we sent."""


class RecordTooLargeError(CxstreamError):
    """A record the worker built is larger than ``limits.max_record_bytes``; not sent."""


class ControlRecordRefused(CxstreamError):
    """A control record on the input topic while ``worker.control_records`` is off."""


class BrokerError(CxstreamError):
    """The local Kafka launcher failed to fetch, format, start or stop the broker."""


class KafkaAuthError(CxstreamError):
    """Kafka refused the client's SASL login or TLS handshake.

    Raised at once instead of retrying: a wrong password or CA does not get
    better by waiting. The message names the protocol, mechanism and user.
    """


class SinkError(CxstreamError):
    """The SQL store failed a batch for a reason that is neither an outage nor the
    data (a missing table, a revoked permission): an operator must act; the sink
    retries, and never dead-letters records for it."""


class SinkUnavailableError(SinkError):
    """The SQL store cannot be reached right now (down, locked, out of disk); the
    batch should be retried as it is."""


class SinkRejectedError(SinkError):
    """The SQL store refuses the data of a batch (a NUL byte in text, a value out of
    range, a constraint, a value the driver cannot bind): retrying cannot help. The
    sink finds the offending records and dead-letters them (stage ``sink``)."""

    stage = "sink"
