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
from typing import Any

PRUNE_BUCKETS = 48


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
        return [[event_id, occurred_at] for event_id, occurred_at in self._seen.items()]

    @classmethod
    def from_state(cls, state: list[Any], retention_ms: int) -> DedupWindow:
        window = cls(retention_ms)
        for event_id, occurred_at in state:
            window._seen[event_id] = occurred_at
            window._expiry.append((occurred_at, event_id))
        heapq.heapify(window._expiry)
        return window
