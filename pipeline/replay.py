"""The offline replay: the reference the streaming path is tested against.

Events are routed to one :class:`PartitionProcessor` per input partition exactly
as Kafka's default partitioner would route them, fed in the given (arrival)
order, and every partition then sees the end of input. Only
:func:`replay_file` touches files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.contract.event import InteractionEvent
from pipeline.core.partitioning import partition_for
from pipeline.core.processor import PartitionProcessor, ProcessorStats
from pipeline.core.records import (
    ContactSummary,
    JourneySignal,
    LateEvent,
    OutputRecord,
    SessionRecord,
    SlaEvent,
)
from pipeline.errors import ContractError
from pipeline.settings import Settings

OUTPUT_FILES: dict[str, str] = {
    SessionRecord.OUTPUT_NAME: "sessions.jsonl",
    ContactSummary.OUTPUT_NAME: "contacts.jsonl",
    SlaEvent.OUTPUT_NAME: "sla_events.jsonl",
    JourneySignal.OUTPUT_NAME: "journey_signals.jsonl",
    LateEvent.OUTPUT_NAME: "late_events.jsonl",
}
REJECTED_FILE = "rejected.jsonl"
HELD_SAMPLE_EVENTS = 1000


@dataclass
class ReplayResult:
    """Output records in emission order and the counters of every partition."""

    records: list[OutputRecord] = field(default_factory=list)
    stats: dict[int, ProcessorStats] = field(default_factory=dict)
    rejected: int = 0
    # Memory check: customers held in state (peak sampled every
    # HELD_SAMPLE_EVENTS events, and after the end of input) and customers seen.
    customers_held_peak: int = 0
    customers_held_at_end: int = 0
    customers_total: int = 0

    def totals(self) -> ProcessorStats:
        """The partitions' counters summed."""
        total = ProcessorStats()
        for stats in self.stats.values():
            for name, value in stats.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
        return total


def replay_events(
    items: Iterable[InteractionEvent], settings: Settings, partitions: int | None = None
) -> ReplayResult:
    """Process ``items`` in the given order, partitioned as Kafka would, then end the input."""
    count = partitions or settings.kafka.input_partitions
    processors: dict[int, PartitionProcessor] = {}
    records: list[OutputRecord] = []
    # customer -> its partition's process(): murmur2 in pure Python is worth
    # caching, and one lookup per event routes it.
    process_of: dict[str, Callable[[InteractionEvent], list[OutputRecord]]] = {}
    peak = 0
    for index, event in enumerate(items):
        process = process_of.get(event.customer_id)
        if process is None:
            partition = partition_for(event.customer_id, count)
            processor = processors.get(partition)
            if processor is None:
                processor = processors[partition] = PartitionProcessor.from_settings(
                    settings, partition
                )
            process = process_of[event.customer_id] = processor.process
        records += process(event)
        if index % HELD_SAMPLE_EVENTS == 0:
            peak = max(peak, sum(p.customers() for p in processors.values()))
    for partition in sorted(processors):
        records.extend(processors[partition].end_of_input())
    held = sum(p.customers() for p in processors.values())
    return ReplayResult(
        records=records,
        stats={p: processors[p].stats for p in sorted(processors)},
        customers_held_peak=max(peak, held),
        customers_held_at_end=held,
        customers_total=len(process_of),
    )


def collapse(records: Iterable[OutputRecord]) -> dict[str, dict[str, dict[str, Any]]]:
    """output name -> natural key -> the last record's ``to_dict()``.

    The canonical form to compare a streaming run with a replay: sinks upsert
    by natural key, so only the last record of each key matters.
    """
    collapsed: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in OUTPUT_FILES}
    for record in records:
        collapsed.setdefault(record.OUTPUT_NAME, {})[record.key] = record.to_dict()
    return collapsed


def replay_file(path: str | Path, settings: Settings, out_dir: str | Path) -> ReplayResult:
    """Replay a JSON Lines file of events; write the outputs as JSONL into ``out_dir``.

    Lines that do not decode or validate are counted and written to
    ``rejected.jsonl`` with their line number and reason; the rest is replayed.
    """
    from pipeline.contract.jsonform import read_events
    from pipeline.contract.validate import validate

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rejected = 0
    with (out / REJECTED_FILE).open("w", encoding="utf-8") as rejects:

        def valid_events() -> Iterator[InteractionEvent]:
            nonlocal rejected
            for line_no, item, raw in read_events(path):
                error: ContractError | None = None
                if isinstance(item, ContractError):
                    error = item
                else:
                    try:
                        yield validate(item, settings.channels)
                        continue
                    except ContractError as exc:
                        error = exc
                rejected += 1
                reject = {
                    "line": line_no,
                    "stage": error.stage,
                    "field": error.field,
                    "reason": str(error),
                    "raw": raw,
                }
                rejects.write(json.dumps(reject, ensure_ascii=False) + "\n")

        result = replay_events(valid_events(), settings)
    result.rejected = rejected
    write_outputs(result.records, out)
    print(summary_line(result, out))
    return result


def write_outputs(records: Iterable[OutputRecord], out_dir: Path) -> None:
    """One JSONL file per output, records in emission order."""
    handles = {
        name: (out_dir / filename).open("w", encoding="utf-8")
        for name, filename in OUTPUT_FILES.items()
    }
    try:
        for record in records:
            handles[record.OUTPUT_NAME].write(
                json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
            )
    finally:
        for handle in handles.values():
            handle.close()


def summary_line(result: ReplayResult, out_dir: Path) -> str:
    totals = result.totals()
    finals = sum(1 for r in result.records if isinstance(r, SessionRecord) and r.status == "final")
    signals = sum(1 for r in result.records if isinstance(r, JourneySignal))
    breaches = sum(1 for r in result.records if isinstance(r, SlaEvent) and r.kind == "breach")
    return (
        f"replay events={totals.events} rejected={result.rejected} "
        f"duplicates={totals.duplicates} late={totals.late} sessions={finals} "
        f"sla_breaches={breaches} journey_signals={signals} out={out_dir}"
    )
