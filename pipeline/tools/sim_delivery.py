"""Stage 2 of the simulator: a producer's delivery order, and broken records.

The event-time stream of :mod:`pipeline.tools.simulator` is perturbed the way real
producers do it: a few events arrive after later ones (within the grace
period), a few arrive very late (beyond session gap + grace), some are sent
twice with the same ``event_id``, and some items are broken (bad JSON or
undecodable bytes). Deterministic for a seed, like the journeys.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.contract.event import (
    CUSTOMER,
    CUSTOMER_MESSAGE,
    FEEDBACK,
    RESOLVED,
    InteractionEvent,
)

if TYPE_CHECKING:
    from pipeline.tools.simulator import SimulatorConfig

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
# Out-of-order deliveries stay within the 5-minute grace; late ones go beyond
# the 30-minute gap plus grace.
OUT_OF_ORDER_MAX_LAG_MS = 4 * MINUTE_MS
LATE_MIN_LAG_MS = 35 * MINUTE_MS

# How an item was delivered.
IN_ORDER = "in_order"
OUT_OF_ORDER = "out_of_order"
LATE = "late"
DUPLICATE = "duplicate"
MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class SimItem:
    """One thing a producer sends: a valid event (maybe re-sent) or a broken record.

    For a malformed item ``event`` is None; ``malformed_json`` is its JSON form (a
    dict with a broken field, or a line of text that is not JSON) and
    ``malformed_bytes`` its Kafka form (bytes no Avro decoder accepts).
    ``malformed_reason`` names the JSON defect, ``malformed_bytes_reason`` the
    bytes defect.
    """

    event: InteractionEvent | None
    delivery: str = IN_ORDER
    malformed_json: dict[str, Any] | str | None = None
    malformed_bytes: bytes | None = None
    malformed_reason: str | None = None
    malformed_bytes_reason: str | None = None

    @property
    def is_malformed(self) -> bool:
        return self.event is None

    def to_json_line(self) -> str:
        """The item as one line of JSONL (a malformed text item is written verbatim)."""
        if self.event is not None:
            return json.dumps(self.event.to_json_dict(), ensure_ascii=False)
        if isinstance(self.malformed_json, str):
            return self.malformed_json
        return json.dumps(self.malformed_json, ensure_ascii=False)


class Delivery:
    """Perturbs the event-time stream into a producer's delivery order."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(f"cxstream-delivery-{config.seed}")
        self.max_delivered = -1
        self.malformed_made = 0
        # (deadline event time, remaining overtakes, event)
        self.held_ooo: list[tuple[int, int, InteractionEvent]] = []
        # Heap of (release once delivered event time passes this, tie-breaker, event).
        self.held_late: list[tuple[int, str, InteractionEvent]] = []
        # (deliveries still to wait, event)
        self.pending_dups: list[tuple[int, InteractionEvent]] = []

    def deliver(self, events: Iterator[InteractionEvent]) -> Iterator[SimItem]:
        cfg = self.config
        for event in events:
            if self.rng.random() < cfg.malformed_share:
                yield self._malformed(event)
            # Held events whose lag would exceed the grace go out before this one.
            for held in self._take_ooo(now=event.occurred_at):
                yield from self._emit(held)
            roll = self.rng.random()
            if roll < cfg.late_share:
                lag = LATE_MIN_LAG_MS + self.rng.randint(MINUTE_MS, 60 * MINUTE_MS)
                heapq.heappush(self.held_late, (event.occurred_at + lag, event.event_id, event))
            elif roll < cfg.late_share + cfg.out_of_order_share:
                lag = self.rng.randint(20 * SECOND_MS, OUT_OF_ORDER_MAX_LAG_MS)
                overtakes = self.rng.randint(1, 4)
                self.held_ooo.append((event.occurred_at + lag, overtakes, event))
            else:
                yield from self._emit(event)
                self.held_ooo = [(d, n - 1, e) for d, n, e in self.held_ooo]
                for held in self._take_ooo(now=None):
                    yield from self._emit(held)
            for late in self._take_late(self.max_delivered):
                yield from self._emit(late)

    def _take_ooo(self, *, now: int | None) -> list[InteractionEvent]:
        """Held events overtaken often enough, or (given ``now``) past their deadline."""

        def due(deadline: int, overtakes_left: int) -> bool:
            return overtakes_left <= 0 or (now is not None and now > deadline)

        ready = [e for d, n, e in self.held_ooo if due(d, n)]
        if ready:
            self.held_ooo = [(d, n, e) for d, n, e in self.held_ooo if not due(d, n)]
        return ready

    def _take_late(self, now: int) -> list[InteractionEvent]:
        ready = []
        while self.held_late and now > self.held_late[0][0]:
            ready.append(heapq.heappop(self.held_late)[2])
        return ready

    def _emit(self, event: InteractionEvent) -> Iterator[SimItem]:
        behind = event.occurred_at < self.max_delivered
        if not behind:
            delivery = IN_ORDER
        elif self.max_delivered - event.occurred_at > LATE_MIN_LAG_MS:
            delivery = LATE
        else:
            delivery = OUT_OF_ORDER
        self.max_delivered = max(self.max_delivered, event.occurred_at)
        yield SimItem(event=event, delivery=delivery)
        # A producer retry after a lost acknowledgement: the very same event again.
        self.pending_dups = [(n - 1, e) for n, e in self.pending_dups]
        due = [e for n, e in self.pending_dups if n < 0]
        if due:
            self.pending_dups = [(n, e) for n, e in self.pending_dups if n >= 0]
            for duplicate in due:
                yield SimItem(event=duplicate, delivery=DUPLICATE)
        if self.rng.random() < self.config.duplicate_share:
            self.pending_dups.append((self.rng.randint(0, 3), event))

    def _malformed(self, event: InteractionEvent) -> SimItem:
        self.malformed_made += 1
        rng = self.rng
        record = event.to_json_dict()
        record["event_id"] = f"e-{self.config.seed}-m{self.malformed_made:07d}"
        reason = rng.choice(_JSON_DEFECTS)
        broken: dict[str, Any] | str
        if reason == "missing_field":
            missing = rng.choice(("event_id", "occurred_at", "customer_id", "channel", "type"))
            broken = {k: v for k, v in record.items() if k != missing}
            reason = f"missing_field:{missing}"
        elif reason == "unknown_channel":
            broken = {**record, "channel": rng.choice(("fax", "telex", "carrier_pigeon"))}
        elif reason == "score_out_of_range":
            broken = {**record, "type": FEEDBACK, "actor": CUSTOMER, "outcome": None, "score": 42}
        elif reason == "outcome_on_non_ended":
            broken = {**record, "type": CUSTOMER_MESSAGE, "actor": CUSTOMER, "outcome": RESOLVED}
        elif reason == "bad_timestamp":
            stamp = rng.choice(("2026-13-45T25:61:00+02:00", "2026-03-02T08:15:00", "yesterday"))
            broken = {**record, "occurred_at": stamp}
        else:
            text = json.dumps(record)
            broken = rng.choice(
                (text[: rng.randint(5, len(text) - 5)], "<html>502 Bad Gateway</html>")
            )
        bytes_reason = rng.choice(_BYTES_DEFECTS)
        if bytes_reason == "garbage":
            raw = bytes([rng.randint(0, 0xBF)]) + rng.randbytes(rng.randint(4, 60))
        elif bytes_reason == "truncated_header":
            raw = b"\xc3\x01" + rng.randbytes(3)
        else:
            raw = b"\xc3\x01" + rng.randbytes(8) + rng.randbytes(rng.randint(20, 80))
        return SimItem(
            event=None,
            delivery=MALFORMED,
            malformed_json=broken,
            malformed_bytes=raw,
            malformed_reason=reason,
            malformed_bytes_reason=bytes_reason,
        )


_JSON_DEFECTS = (
    "missing_field",
    "unknown_channel",
    "score_out_of_range",
    "outcome_on_non_ended",
    "bad_timestamp",
    "not_json",
)
_BYTES_DEFECTS = ("garbage", "truncated_header", "unknown_fingerprint")


def events_only(items: Iterator[SimItem]) -> Iterator[InteractionEvent]:
    """The valid events of ``items`` (duplicates included), dropping malformed ones."""
    return (item.event for item in items if item.event is not None)
