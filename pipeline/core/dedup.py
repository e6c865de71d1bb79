"""Per-customer de-duplication of redelivered events.

Producers retry and Kafka delivers at least once, so the same ``event_id`` can
arrive twice. An id counts as seen while its event time is within the retention
of the partition clock; whether an id is a duplicate is decided against the
clock at lookup, so when pruning happens never changes a result. Pruning is
therefore batched: it is due once per *bucket* (1/48 of the retention, 30 min for
24 h) rather than once per id, so a busy customer wakes its timer, and has its
state rewritten, once per bucket instead of once per event it sent.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

PRUNE_BUCKETS = 48
# The state holds the ids as one string joined by this (one JSON string encodes
# far faster than a list of [id, time] pairs); an id that contains it makes the
# state fall back to a list of ids.
ID_SEPARATOR = "\n"


class DedupWindow:
    """The event ids one customer sent within the retention window."""

    __slots__ = ("_expiry", "_seen", "bucket_ms", "retention_ms")

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.bucket_ms = max(1, retention_ms // PRUNE_BUCKETS)
        self._seen: dict[str, int] = {}
        # (occurred_at, event_id): pruning pops the oldest ids first.
        self._expiry: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, event_id: str, occurred_at: int, clock_ms: int) -> bool:
        """True if ``event_id`` is a duplicate; otherwise remember it and return False."""
        seen_at = self._seen.get(event_id)
        if seen_at is not None and seen_at >= clock_ms - self.retention_ms:
            return True
        self._seen[event_id] = occurred_at
        heapq.heappush(self._expiry, (occurred_at, event_id))
        return False

    def next_expiry_ms(self) -> int | None:
        """When to prune next: the oldest id's expiry rounded up to the next bucket boundary."""
        if not self._expiry:
            return None
        expires = self._expiry[0][0] + self.retention_ms + 1
        return -(-expires // self.bucket_ms) * self.bucket_ms

    def prune(self, clock_ms: int) -> None:
        """Forget ids whose event time is older than the retention."""
        horizon = clock_ms - self.retention_ms
        expiry = self._expiry
        while expiry and expiry[0][0] < horizon:
            occurred_at, event_id = heapq.heappop(expiry)
            if self._seen.get(event_id) == occurred_at:
                del self._seen[event_id]

    def to_state(self) -> list[Any]:
        """``[ids, times]``: the ids joined by :data:`ID_SEPARATOR` (or a list of ids if
        one contains it) and their event times, in the same order."""
        seen = self._seen
        ids: str | list[str] = ID_SEPARATOR.join(seen)
        if ids.count(ID_SEPARATOR) != max(len(seen) - 1, 0):
            ids = list(seen)
        return [ids, list(seen.values())]

    @classmethod
    def from_state(cls, state: list[Any], retention_ms: int) -> DedupWindow:
        """Rebuild from :meth:`to_state`."""
        ids, times = state
        if isinstance(ids, str):
            ids = ids.split(ID_SEPARATOR) if times else []
        return cls._from_pairs(zip(ids, times, strict=True), retention_ms)

    @classmethod
    def from_pairs(cls, state: list[Any], retention_ms: int) -> DedupWindow:
        """Rebuild from the version-1 state: a list of ``[id, time]`` pairs."""
        return cls._from_pairs(state, retention_ms)

    @classmethod
    def _from_pairs(cls, pairs: Iterable[Any], retention_ms: int) -> DedupWindow:
        window = cls(retention_ms)
        seen = window._seen
        for event_id, occurred_at in pairs:
            seen[event_id] = occurred_at
        window._expiry = [(occurred_at, event_id) for event_id, occurred_at in seen.items()]
        heapq.heapify(window._expiry)
        return window
