"""The partition processor drives any per-customer state machine that keeps the
:class:`pipeline.core.logic.CustomerLogic` protocol: its timer heap, persistence
and eviction do not depend on :class:`pipeline.core.customer.CustomerState`."""

from __future__ import annotations

import json
from typing import Any

from pipeline.core.customer import APPLIED, DUPLICATE
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import LateEvent, OutputRecord
from pipeline.core.rules import CoreRules
from pipeline.settings import CoreSettings
from tests.unit.core_standins import MINUTE, T0, ev

REMIND_AFTER_MS = 10 * MINUTE


class Reminders:
    """A small machine: every new event asks for one reminder ten minutes after it."""

    def __init__(self, customer_id: str, rules: CoreRules) -> None:
        self.customer_id = customer_id
        self.wake: int | None = None
        self.due_hint: int | None = None
        self.seen: set[str] = set()
        self.due: list[tuple[int, str]] = []

    def apply(self, event: Any, clock_ms: int, out: list[OutputRecord]) -> str:
        if event.event_id in self.seen:
            return DUPLICATE
        self.seen.add(event.event_id)
        due = event.occurred_at + REMIND_AFTER_MS
        self.due.append((due, event.event_id))
        self.due.sort()
        self.due_hint = due
        return APPLIED

    def identified(self, contact_id: str, at: int, out: list[OutputRecord]) -> None:
        pass  # reminders know no contacts

    def next_due(self) -> int | None:
        return self.due[0][0] if self.due else None

    def fire_until(self, limit_ms: int, out: list[OutputRecord]) -> tuple[bool, int | None]:
        fired = False
        while self.due and self.due[0][0] <= limit_ms:
            due, event_id = self.due.pop(0)
            out.append(
                LateEvent(
                    event_id=event_id,
                    customer_id=self.customer_id,
                    occurred_at=due,
                    clock_at=limit_ms,
                    reason="reminder",
                    event={},
                )
            )
            fired = True
        return fired, self.next_due()

    @property
    def has_open_work(self) -> bool:
        return bool(self.due)

    def finish(self, out: list[OutputRecord]) -> None:
        self.fire_until(self.due[-1][0], out)

    def pending_updates(self) -> list[Any]:
        return []

    @property
    def has_pending(self) -> bool:
        return False

    @property
    def is_empty(self) -> bool:
        return not self.due

    @property
    def open_session_count(self) -> int:
        return 0

    def running_sla_clocks(self) -> list[tuple[str, int]]:
        return []

    def to_state(self) -> dict[str, Any]:
        return {"seen": sorted(self.seen), "due": self.due}

    @classmethod
    def from_state(cls, customer_id: str, state: dict[str, Any], rules: CoreRules) -> Reminders:
        machine = cls(customer_id, rules)
        machine.seen = set(state["seen"])
        machine.due = [(due, event_id) for due, event_id in state["due"]]
        return machine


def make_processor() -> PartitionProcessor:
    return PartitionProcessor(
        core=CoreSettings(), policies=(), business_calendar=None, logic=Reminders
    )


def reminders(records: list[Any]) -> list[tuple[str, str, int]]:
    return [(r.customer_id, r.event_id, r.occurred_at) for r in records if r.reason == "reminder"]


def test_the_processor_fires_a_machine_s_timed_work_in_due_order_and_evicts_it_when_empty():
    processor = make_processor()
    out = []
    out += processor.process(ev(T0, customer="c2", event_id="b"))
    out += processor.process(ev(T0 - MINUTE, customer="c1", event_id="a"))
    out += processor.process(ev(T0, customer="c2", event_id="b"))  # a duplicate
    assert processor.stats.duplicates == 1
    assert processor.customers() == 2
    out += processor.process(ev(T0 + REMIND_AFTER_MS, customer="c3", event_id="c"))
    assert reminders(out) == [
        ("c1", "a", T0 - MINUTE + REMIND_AFTER_MS),
        ("c2", "b", T0 + REMIND_AFTER_MS),
    ]
    assert processor.customers() == 1  # c1 and c2 had nothing left
    assert processor.take_dirty() == {
        "c1": None,
        "c2": None,
        "c3": json.dumps(
            {"seen": ["c"], "due": [[T0 + 2 * REMIND_AFTER_MS, "c"]]}, separators=(",", ":")
        ).encode(),
    }


def test_a_machine_restored_from_its_state_fires_what_the_uninterrupted_one_fires():
    first = make_processor()
    first.process(ev(T0, customer="c1", event_id="a"))
    state = first.take_dirty()
    expected = first.advance(T0 + REMIND_AFTER_MS)

    restored = make_processor()
    restored.load_clock(T0)
    restored.load_state("c1", state["c1"])
    assert restored.advance(T0 + REMIND_AFTER_MS) == expected
    assert reminders(expected) == [("c1", "a", T0 + REMIND_AFTER_MS)]


def test_end_of_input_finishes_every_machine_with_open_work():
    processor = make_processor()
    processor.process(ev(T0, customer="c1", event_id="a"))
    assert reminders(processor.end_of_input()) == [("c1", "a", T0 + REMIND_AFTER_MS)]
    assert processor.customers() == 0
