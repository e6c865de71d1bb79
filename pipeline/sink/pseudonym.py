"""Pseudonymisation of customer identifiers before they reach SQL.

Analysts need to follow one customer across tables (sessions, contacts, SLA
events, journey signals) without learning who the customer is. A keyed HMAC
gives a stable pseudonym per customer that cannot be reversed or recomputed
without the key, which stays outside the database.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.settings import SqlSettings

PSEUDONYM_PREFIX = "p-"
_HEX_CHARS = 32


class Pseudonymizer:
    """Maps a customer id to ``p-`` + the first 32 hex chars of HMAC-SHA256(key, id)."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ConfigError("the pseudonymisation key must not be empty")
        self._key = key

    def customer(self, customer_id: str) -> str:
        """The pseudonym of ``customer_id``; the same key always gives the same answer."""
        digest = hmac.new(self._key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:_HEX_CHARS]

    @classmethod
    def from_settings(cls, sql: SqlSettings) -> Pseudonymizer | None:
        """The pseudonymizer the settings ask for, or None when pseudonymise is off
        (the checks of :func:`pseudonym_key`)."""
        key = pseudonym_key(sql)
        return cls(key) if key is not None else None


def pseudonym_key(sql: SqlSettings) -> bytes | None:
    """The pseudonymisation key the settings name, or None when pseudonymise is off.

    Raises ConfigError when pseudonymise is on and the key file is unset,
    unreadable or empty: storing clear ids by accident is worse than not starting.
    """
    if not sql.pseudonymise:
        return None
    if not sql.pseudonym_key_file:
        raise ConfigError("sql.pseudonymise is on but sql.pseudonym_key_file is not set")
    path = Path(sql.pseudonym_key_file)
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"sql.pseudonym_key_file {path} cannot be read: {exc}") from exc
    if not key:
        raise ConfigError(f"sql.pseudonym_key_file {path} is empty")
    return key
