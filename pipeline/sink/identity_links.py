"""The ``identity_links`` table: which customer an identifier belonged to, when (issue 16).

One row per period of an identifier's link history
(:class:`pipeline.core.identity.IdentityLinkRecord`, output name
``identity_link``): the identifier as its keyed hash (``<kind>:<32 hex>``, never
the phone number or session id), the customer (NULL: a wrong link was undone,
no customer from ``valid_from``), and ``valid_from`` / ``valid_to`` (NULL: until
further notice). Keyed by ``link_id`` = ``<identifier>:<valid_from ms>``: a link
moved to another customer at the same moment, or voided, replaces its row.
Migration 0008; docs/sql.md "identity_links".

With ``sql.pseudonymise`` on, ``customer_id`` is pseudonymised like every
customer id and ``identifier`` is hashed again with the same key
(:func:`pseudonymise_identity`), so a replay that ran without the pseudonym
key (plain SHA-256 of the value) stores nothing a dictionary of phone numbers
could reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.sink.models import Base, ms_to_utc
from pipeline.sink.pseudonym import Pseudonymizer

OUTPUT_NAME: Final = "identity_link"

Record = Mapping[str, Any]
Row = tuple[Any, ...]


class IdentityLinkRow(Base):
    """A period of an identifier's link to a customer."""

    __tablename__ = "identity_links"

    link_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(200), index=True)
    identifier_kind: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(200), index=True)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


COLUMNS: Final = (
    "link_id",
    "identifier",
    "identifier_kind",
    "customer_id",
    "valid_from",
    "valid_to",
    "changed_at",
)


def identity_link_row(record: Record, now: datetime) -> Row:
    """The row of an ``identity_link`` record, in :data:`COLUMNS` order."""
    valid_to = record.get("valid_to")
    return (
        record["link_id"],
        record["identifier"],
        record["identifier_kind"],
        record.get("customer_id"),
        ms_to_utc(record["valid_from"]),
        None if valid_to is None else ms_to_utc(valid_to),
        ms_to_utc(record["changed_at"]),
    )


def pseudonymise_identity(record: Record, pseudonymizer: Pseudonymizer) -> Record:
    """An ``identity_link`` record with its customer and identifier pseudonymised."""
    identifier = pseudonymizer.customer(record["identifier"])
    customer = record.get("customer_id")
    return {
        **record,
        "identifier": identifier,
        "link_id": f"{identifier}:{record['valid_from']}",
        "customer_id": None if customer is None else pseudonymizer.customer(customer),
    }


def pseudonymise_event_identifier(event: Mapping[str, Any], pseudonymizer: Pseudonymizer) -> Any:
    """A late event's raw JSON with the identifier's value pseudonymised (it may carry
    a phone number: events released through identity keep their identifier)."""
    identifier = event.get("identifier")
    if not isinstance(identifier, Mapping) or not identifier.get("value"):
        return event
    value = pseudonymizer.customer(str(identifier["value"]))
    return {**event, "identifier": {**identifier, "value": value}}
