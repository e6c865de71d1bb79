"""The identity stage: the input stream in, the customer-keyed stream out (issue 16).

What the worker will do through the ``identity`` and ``interactions-rekeyed``
topics (docs/architecture.md, "Identity continuity"), as one pure object:
events that need identity (:func:`~pipeline.contract.event.needs_identity`: no customer,
``identified``, ``unlinked``) go to the :class:`IdentityProcessor` of their identifier's
partition (the identity topic is keyed like the input, ``id:<kind>:<value>``, and has
the input's partition count, so the partition is the one Kafka's default partitioner
picks for the input record); every other event passes through unchanged. The result is a
list of :data:`Routed` records, each for one customer:


- :class:`CustomerEvent`: an event for the customer's processor;
  ``released`` says it came through identity (the processor then keeps it so
  it can be taken back: :meth:`PartitionProcessor.process_released`);
- :class:`Unattribution`: identity takes these events back from the customer
  (:meth:`PartitionProcessor.unattribute`); consecutive unattribute records of
  one customer are one record, so the customer is rebuilt once.

The offline replay (:mod:`pipeline.replay`) runs one stage over the whole
input. The worker can call :meth:`IdentityStage.process` per record of its
identity partitions and persist :meth:`IdentityStage.take_dirty` (per
identifier, JSON-able) beside its offsets, as it does for the customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.contract.event import InteractionEvent, needs_identity, record_key
from pipeline.core.identity import (
    IdentityLinkRecord,
    IdentityMeasures,
    IdentityOutput,
    IdentityProcessor,
    IdentityRules,
    Release,
    Unattribute,
)
from pipeline.core.partitioning import partition_for


@dataclass(frozen=True, slots=True)
class CustomerEvent:
    """An event for its customer's processor (``event.customer_id`` is the key)."""

    event: InteractionEvent
    released: bool = False
    #: When the identifier was identified as this customer (the link's start;
    #: ``contacts.identified_at``); None when identity did not give the event.
    identified_at: int | None = None

    @property
    def customer_key(self) -> str:
        return self.event.customer_id


@dataclass(frozen=True, slots=True)
class Unattribution:
    """Identity takes ``event_ids``, released to ``customer_key`` before, back."""

    customer_key: str
    event_ids: tuple[str, ...]


Routed = CustomerEvent | Unattribution


def route(outputs: list[IdentityOutput]) -> list[Routed]:
    """The identity processor's outputs as routed records (unattribute records of one
    customer in a row become one)."""
    routed: list[Routed] = []
    for output in outputs:
        if isinstance(output, Release):
            routed.append(CustomerEvent(output.event, True, output.identified_at))
        elif isinstance(output, Unattribute):
            last = routed[-1] if routed else None
            if isinstance(last, Unattribution) and last.customer_key == output.customer_key:
                routed[-1] = Unattribution(last.customer_key, (*last.event_ids, output.event_id))
            else:
                routed.append(Unattribution(output.customer_key, (output.event_id,)))
    return routed


class IdentityStage:
    """Identity processors per identity partition, and the pass-through of the rest."""

    def __init__(self, rules: IdentityRules, partitions: int) -> None:
        self.rules = rules
        self.partitions = partitions
        self.processors: dict[int, IdentityProcessor] = {}

    def partition_of(self, event: InteractionEvent) -> int:
        """The identity partition of ``event``: its input key's (``id:<kind>:<value>``,
        :func:`~pipeline.contract.event.record_key`), the key the worker forwards it
        under, so identity partition p holds exactly the identity events of input
        partition p, in their input order, as the replay applies them."""
        if event.identifier_kind is None or event.identifier_value is None:
            raise ValueError(f"event {event.event_id} needs identity but has no identifier")
        return partition_for(record_key(event), self.partitions)

    def processor(self, partition: int) -> IdentityProcessor:
        processor = self.processors.get(partition)
        if processor is None:
            processor = self.processors[partition] = IdentityProcessor(self.rules)
        return processor

    def process(self, event: InteractionEvent) -> list[Routed]:
        """Route one validated input event."""
        if not needs_identity(event):
            return [CustomerEvent(event)]
        return route(self.processor(self.partition_of(event)).process(event))

    def advance(self, clock_ms: int) -> list[Routed]:
        """Move every identity partition's clock (live mode) and route what expired."""
        out: list[IdentityOutput] = []
        for partition in sorted(self.processors):
            out.extend(self.processors[partition].advance(clock_ms))
        return route(out)

    def end_of_input(self, input_end_ms: int | None = None) -> list[Routed]:
        """No more input: what is due by ``input_end_ms`` fires, held events go anonymous."""
        out: list[IdentityOutput] = []
        for partition in sorted(self.processors):
            out.extend(self.processors[partition].end_of_input(input_end_ms))
        return route(out)

    def take_link_rows(self) -> list[IdentityLinkRecord]:
        """The identity processors' changed link periods since the last call."""
        rows: list[IdentityLinkRecord] = []
        for partition in sorted(self.processors):
            rows.extend(self.processors[partition].take_link_rows())
        return rows

    def take_measures(self) -> IdentityMeasures:
        """The identity processors' per-channel figures since the last call, merged."""
        merged = IdentityMeasures()
        for partition in sorted(self.processors):
            measures = self.processors[partition].take_measures()
            for channel, count in measures.linked.items():
                merged.linked[channel] = merged.linked.get(channel, 0) + count
            for channel, count in measures.expired.items():
                merged.expired[channel] = merged.expired.get(channel, 0) + count
            merged.delays.extend(measures.delays)
            merged.reattributed += measures.reattributed
        return merged

    def held_now(self) -> int:
        return sum(p.held_now() for p in self.processors.values())

    def stats(self) -> dict[str, int]:
        """The identity processors' counters summed."""
        total: dict[str, int] = {}
        for processor in self.processors.values():
            for name, value in processor.stats.as_dict().items():
                total[name] = total.get(name, 0) + value
        return total

    def load_state(self, partition: int, key: str, data: dict[str, Any]) -> None:
        """Restore one identifier of ``partition`` (after a restart: the identity
        changelog's record, as :meth:`take_dirty` gave it)."""
        self.processor(partition).load_state(key, data)

    def load_clock(self, partition: int, clock_ms: int) -> None:
        self.processor(partition).load_clock(clock_ms)

    def clock_ms(self, partition: int) -> int | None:
        processor = self.processors.get(partition)
        return None if processor is None else processor.clock_ms

    def take_dirty(self, partition: int) -> dict[str, dict[str, Any] | None]:
        """The partition's changed identifiers (the identity changelog's records)."""
        processor = self.processors.get(partition)
        return {} if processor is None else processor.take_dirty()


def identity_stream(
    events: list[InteractionEvent], rules: IdentityRules, partitions: int
) -> list[Routed]:
    """The whole input routed, ending with the stage's end of input (held events
    released as anonymous) at the input's latest event time."""
    stage = IdentityStage(rules, partitions)
    routed: list[Routed] = []
    input_end: int | None = None
    for event in events:
        if input_end is None or event.occurred_at > input_end:
            input_end = event.occurred_at
        routed.extend(stage.process(event))
    routed.extend(stage.end_of_input(input_end))
    return routed
