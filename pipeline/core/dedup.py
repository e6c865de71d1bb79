"""Per-customer de-duplication of redelivered events.

Producers retry and Kafka delivers at least once, so the same ``event_id`` can
arrive twice. An id counts as seen while its event time is within the retention
of the partition clock; whether an id is a duplicate is decided against the
clock at lookup, so when pruning happens never changes a result. Pruning is
therefore batched: it is due once per *bucket* (1/48 of the retention, 30 min for
24 h) rather than once per id, so a busy customer wakes its timer, and has its
state rewritten, once per bucket instead of once per event it sent.

Adding an id allocates nothing but its dict entry (no expiry heap): pruning
scans the ids once per bucket, which is cheaper than a heap entry per event.
The serialized form (two strings) is kept up to date as ids arrive once it has
been asked for, because a busy customer's state is written once per batch and
re-encoding every id each time dominated the cost of writing it.
"""

from __future__ import annotations

from typing import Any, Final

PRUNE_BUCKETS: Final = 48
# The state holds the ids as one string joined by this, and their times as one
# string of decimals joined by TIME_SEPARATOR: a JSON string encodes far faster
# than a list of [id, time] pairs. An id that contains ID_SEPARATOR makes the
# state fall back to a list of ids.
ID_SEPARATOR: Final = "\n"
TIME_SEPARATOR: Final = ","


class DedupWindow:
    """The event ids one customer sent within the retention window."""

    __slots__ = (
        "_ids_text",
        "_oldest",
        "_seen",
        "_times_text",
        "bucket_ms",
        "expiry_ms",
        "retention_ms",
    )

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.bucket_ms = max(1, retention_ms // PRUNE_BUCKETS)
        self._seen: dict[str, int] = {}
        self._oldest: int | None = None  # the smallest time in _seen
        # What next_expiry_ms() returns (read it, never set it): the customer
        # reads it per wake-up while _oldest rarely changes, so it is derived
        # only when _oldest is set.
        self.expiry_ms: int | None = None
        # The two strings of to_state() while they are kept up to date (None:
        # not asked for yet, or invalidated by a prune or a re-added id).
        self._ids_text: str | None = None
        self._times_text: str | None = None

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, event_id: str, occurred_at: int, clock_ms: int) -> bool:
        """True if ``event_id`` is a duplicate; otherwise remember it and return False."""
        seen = self._seen
        seen_at = seen.get(event_id)
        if seen_at is not None:
            if seen_at >= clock_ms - self.retention_ms:
                return True
            # Seen before the retention and not pruned yet: a new sighting.
            # Rare, so recompute rather than track.
            seen[event_id] = occurred_at
            self._set_oldest(min(seen.values()))
            self._ids_text = self._times_text = None
            return False
        times = self._times_text
        seen[event_id] = occurred_at
        oldest = self._oldest
        if oldest is None or occurred_at < oldest:
            self._set_oldest(occurred_at)
        if times is not None:
            if ID_SEPARATOR in event_id:
                self._ids_text = self._times_text = None
            elif times:
                self._ids_text = f"{self._ids_text}{ID_SEPARATOR}{event_id}"
                self._times_text = f"{times}{TIME_SEPARATOR}{occurred_at}"
            else:
                self._ids_text, self._times_text = event_id, str(occurred_at)
        return False

    def next_expiry_ms(self) -> int | None:
        """When to prune next: the oldest id's expiry rounded up to the next bucket boundary."""
        return self.expiry_ms

    def _set_oldest(self, oldest: int | None) -> None:
        self._oldest = oldest
        if oldest is None:
            self.expiry_ms = None
        else:
            expires = oldest + self.retention_ms + 1
            self.expiry_ms = -(-expires // self.bucket_ms) * self.bucket_ms

    def prune(self, clock_ms: int) -> None:
        """Forget ids whose event time is older than the retention."""
        horizon = clock_ms - self.retention_ms
        oldest = self._oldest
        if oldest is None or oldest >= horizon:
            return
        seen = {event_id: at for event_id, at in self._seen.items() if at >= horizon}
        self._seen = seen
        self._set_oldest(min(seen.values()) if seen else None)
        self._ids_text = self._times_text = None

    def to_state(self) -> list[Any]:
        """``[ids, times]``: the ids joined by :data:`ID_SEPARATOR` (a list of ids if one
        contains it) and their event times joined by :data:`TIME_SEPARATOR`, in one order."""
        ids = self._ids_text
        times = self._times_text
        if ids is None or times is None:
            seen = self._seen
            ids = ID_SEPARATOR.join(seen)
            times = TIME_SEPARATOR.join(map(str, seen.values()))
            if ids.count(ID_SEPARATOR) != max(len(seen) - 1, 0):
                return [list(seen), times]
            self._ids_text, self._times_text = ids, times
        return [ids, times]

    @classmethod
    def from_state(cls, state: list[Any], retention_ms: int) -> DedupWindow:
        """Rebuild from :meth:`to_state`."""
        ids, times = state
        if not times:
            return cls(retention_ms)
        if isinstance(ids, str):
            ids = ids.split(ID_SEPARATOR)
        window = cls._from_pairs(
            zip(ids, map(int, times.split(TIME_SEPARATOR)), strict=True), retention_ms
        )
        return window

    @classmethod
    def from_pairs(cls, state: list[Any], retention_ms: int) -> DedupWindow:
        """Rebuild from the version-1 state: a list of ``[id, time]`` pairs."""
        return cls._from_pairs(state, retention_ms)

    @classmethod
    def _from_pairs(cls, pairs: Any, retention_ms: int) -> DedupWindow:
        window = cls(retention_ms)
        seen = window._seen
        for event_id, occurred_at in pairs:
            seen[event_id] = occurred_at
        window._set_oldest(min(seen.values()) if seen else None)
        return window
