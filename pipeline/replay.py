"""The offline replay: the reference the streaming path is tested against.

Events are routed to one :class:`PartitionProcessor` per input partition exactly
as Kafka's default partitioner would route them, fed in the given (arrival)
order, and every partition then sees the end of input at the latest event time
of the whole input (so a breach due before the input's last event fires whichever
partition its customer hashes to; mid-stream each partition's clock is its own,
as in Kafka Streams). Partitions are
independent, so a large replay runs them in several processes (one per usable
CPU core by default; the standard library's ``ProcessPoolExecutor``, forked so
the children inherit the input in memory) and merges their records back into
the one-process order. Only :func:`replay_file` touches files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import heapq
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from pipeline.contract.event import InteractionEvent, needs_identity
from pipeline.core.identity import IdentityLinkRecord, IdentityRules
from pipeline.core.identity_stage import CustomerEvent, IdentityStage, Routed
from pipeline.core.partitioning import partition_for
from pipeline.core.processor import PartitionProcessor, ProcessorStats
from pipeline.core.records import (
    NEED_RETRACTED,
    SESSION_SUPERSEDED,
    SLA_RETRACTED,
    ContactSummary,
    JourneySignal,
    LateEvent,
    NeedRecord,
    OutputRecord,
    SessionRecord,
    SlaEvent,
)
from pipeline.errors import CxstreamError
from pipeline.replay_io import (
    ShareLines,
    decode_lines,
    lines_by_output,
    merged_lines,
    read_lines,
    summary_counts,
)
from pipeline.settings import Settings
from pipeline.sink.pseudonym import pseudonym_key

OUTPUT_FILES: dict[str, str] = {
    SessionRecord.OUTPUT_NAME: "sessions.jsonl",
    ContactSummary.OUTPUT_NAME: "contacts.jsonl",
    SlaEvent.OUTPUT_NAME: "sla_events.jsonl",
    JourneySignal.OUTPUT_NAME: "journey_signals.jsonl",
    LateEvent.OUTPUT_NAME: "late_events.jsonl",
    NeedRecord.OUTPUT_NAME: "needs.jsonl",
}
REJECTED_FILE = "rejected.jsonl"
IDENTITY_LINKS_FILE = "identity_links.jsonl"
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
    #: The identity stage's counters (issue 16; empty: no identity events).
    identity: dict[str, int] = field(default_factory=dict)
    #: The partitions' re-attribution counters summed (ReattributionStats; empty
    #: when the input had no identity events).
    reattribution: dict[str, int] = field(default_factory=dict)
    #: The identifiers' link periods at the end (the future ``identity_links`` rows;
    #: written to identity_links.jsonl), identifiers pseudonymised.
    identity_links: list[IdentityLinkRecord] = field(default_factory=list)
    #: When the shares wrote their records as JSON lines (:func:`replay_file`
    #: without ``keep_records``): output name -> the file's bytes in pieces, and
    #: ``records`` stays empty; ``counts`` then holds what :func:`summary_line` reads.
    outputs: dict[str, list[bytes]] | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def totals(self) -> ProcessorStats:
        """The partitions' counters summed."""
        total = ProcessorStats()
        for stats in self.stats.values():
            for name, value in stats.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
        return total


#: Below this many events a replay with ``replay.workers: auto`` stays in one
#: process: forking and sending the results back would cost more than it saves.
PARALLEL_MIN_EVENTS = 20_000


@dataclass
class _Share:
    """What one share of the partitions produced.

    ``records_by_event`` pairs the input index of each event that emitted records
    with those records, so the shares of a parallel replay merge back into the
    one-process order. ``held_samples`` are the share's held customers at every
    :data:`HELD_SAMPLE_EVENTS`-th input index (its own events or not), so the
    shares' samples add up to the one-process figures.
    """

    records_by_event: list[tuple[int, list[OutputRecord]]]
    end_records: dict[int, list[OutputRecord]]
    stats: dict[int, ProcessorStats]
    held_samples: list[int]
    held_at_end: int
    customers: int
    reattribution: dict[str, int] = field(default_factory=dict)
    #: The records as JSON lines instead (:func:`_as_lines`): output name ->
    #: ``(order, lines)``, where ``order`` is the input index of the event that
    #: emitted them, or for the end of input the input's length plus the partition.
    lines: ShareLines | None = None
    counts: dict[str, int] = field(default_factory=dict)


def replay_events(
    items: Iterable[InteractionEvent],
    settings: Settings,
    partitions: int | None = None,
    *,
    workers: int | None = None,
) -> ReplayResult:
    """Process ``items`` in the given order, partitioned as Kafka would, then end the input.

    ``workers`` (default: the ``replay.workers`` setting; 0 = auto) processes run
    the partitions, partition ``p`` in process ``p % workers``. The result is the
    same for any number of workers: records in input order, then every
    partition's end of input in partition order.
    """
    with collector_paused():
        return _replay(items, settings, partitions, workers, as_lines=False)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a replay.

    A replay holds its whole input and its outputs in memory, and the core keeps
    every customer's state: each full collection walks all of it, again and again
    as the heap grows, for objects that are acyclic and live until the end.
    Measured on 100,000 simulator events (CPU seconds of the core): 1.77-1.86
    paused against 1.91-2.01 with the commands' thresholds
    (:mod:`pipeline.runtime.tuning`) and ~3.0 with CPython's defaults (a library
    caller); the peak memory of the replay did not change with it paused (the
    core makes no cycles worth collecting). Forked shares inherit the pause, so
    the collector does not touch (and copy) the parent's pages either.
    Reference counting still frees everything acyclic.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _replay(
    items: Iterable[InteractionEvent],
    settings: Settings,
    partitions: int | None,
    workers: int | None,
    *,
    as_lines: bool,
) -> ReplayResult:
    """:func:`replay_events`; with ``as_lines`` every share writes its records as
    JSON lines (in its own process) and the result holds the output files' bytes."""
    count = partitions or settings.kafka.input_partitions
    events: Sequence[InteractionEvent | Routed] = (
        items if isinstance(items, Sequence) else list(items)
    )
    identity: dict[str, int] = {}
    links: list[IdentityLinkRecord] = []
    if any(needs_identity(e) for e in events):  # type: ignore[arg-type]  # all events here
        events, identity, links = _through_identity(events, settings, count)  # type: ignore[arg-type]
    processes = replay_processes(settings, len(events), partitions=count, requested=workers)
    if processes == 1:
        shares = [_replay_share(events, settings, count, None)]
        if as_lines:
            shares = [_as_lines(shares[0], len(events))]
    else:
        shares = _replay_in_processes(events, settings, count, processes, as_lines)
    result = _merge(shares)
    if identity:
        result.identity = identity
        result.identity_links = links
        result.reattribution = _summed(share.reattribution for share in shares)
    return result


def _through_identity(
    events: Sequence[InteractionEvent], settings: Settings, count: int
) -> tuple[list[InteractionEvent | Routed], dict[str, int], list[IdentityLinkRecord]]:
    """The input as the customers' processors get it after the identity stage
    (:mod:`pipeline.core.identity_stage`), what the worker's ``identity`` and
    ``interactions-rekeyed`` topics do: events that pass through stay plain events
    (the fast path below), the rest become routed records in the order the stage
    produced them; the stage's end of input (held events released as anonymous)
    comes last, before the partitions' own."""
    rules = IdentityRules.from_settings(settings.identity, pseudonym_key(settings.sql))
    stage = IdentityStage(rules, count)
    out: list[InteractionEvent | Routed] = []
    input_end: int | None = None
    for event in events:
        if input_end is None or event.occurred_at > input_end:
            input_end = event.occurred_at
        if needs_identity(event):
            out.extend(stage.process(event))
        else:
            out.append(event)
    out.extend(stage.end_of_input(input_end))
    stats = stage.stats()
    stats["held_at_end"] = stage.held_now()
    return out, stats, stage.take_link_rows()


class ReplayShareFailed(CxstreamError):
    """A share of the partitions failed in its own process, or the process died."""


def can_fork() -> bool:
    """Whether this platform can fork (not Windows): the shares inherit the input."""
    return "fork" in multiprocessing.get_all_start_methods()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


# What a forked share inherits: set once per parallel replay, read in the child.
_Input = tuple[Sequence[InteractionEvent | Routed], Settings, int, int, bool]
_inherited: _Input | None = None


def _inherit(job: _Input) -> None:
    """The pool's initializer. With the fork start method its arguments are not
    pickled: the child gets the parent's objects as they are in memory."""
    global _inherited
    _inherited = job


def _child_share(share: int) -> _Share:
    assert _inherited is not None, "a share runs only in a process forked by the pool"
    events, settings, count, processes, as_lines = _inherited
    done = _replay_share(events, settings, count, _partitions_of(share, count, processes))
    # Lines pickle as bytes, far cheaper than the records they were written from.
    return _as_lines(done, len(events)) if as_lines else done


def _partitions_of(share: int, count: int, processes: int) -> frozenset[int]:
    return frozenset(p for p in range(count) if p % processes == share)


def _replay_in_processes(
    events: Sequence[InteractionEvent | Routed],
    settings: Settings,
    count: int,
    processes: int,
    as_lines: bool = False,
) -> list[_Share]:
    """Share 0 here, shares 1..processes-1 in forked pool processes; in share order.

    A share that raises in its process, or a process that dies, stops the replay
    with :class:`ReplayShareFailed` before anything is written. If this process's
    own share raises, its error propagates once the children have finished
    (``ProcessPoolExecutor`` has no public way to kill a running task before 3.14).
    """
    with ProcessPoolExecutor(
        max_workers=processes - 1,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_inherit,
        initargs=((events, settings, count, processes, as_lines),),
    ) as pool:
        futures = [pool.submit(_child_share, share) for share in range(1, processes)]
        own = _replay_share(events, settings, count, _partitions_of(0, count, processes))
        shares = [_as_lines(own, len(events)) if as_lines else own]
        for share, future in enumerate(futures, start=1):
            try:
                shares.append(future.result())
            except Exception as exc:  # the child's exception, or BrokenProcessPool
                for waiting in futures:
                    waiting.cancel()
                raise ReplayShareFailed(
                    f"replay share {share} failed in its process: {type(exc).__name__}: {exc}"
                ) from exc
    return shares


def replay_processes(
    settings: Settings,
    events: int,
    *,
    partitions: int | None = None,
    requested: int | None = None,
) -> int:
    """Processes a replay of ``events`` events runs in: ``requested``, else the
    ``replay.workers`` setting, where 0 is auto; never more than the partitions,
    and one where the platform cannot fork."""
    if not can_fork():
        return 1  # the shares are forked; without fork the replay stays in one process
    wanted = settings.replay.workers if requested is None else requested
    if wanted == 0:  # auto
        if events < PARALLEL_MIN_EVENTS:
            return 1
        wanted = usable_cores()
    return max(1, min(wanted, partitions or settings.kafka.input_partitions))


def _replay_share(
    events: Sequence[InteractionEvent | Routed],
    settings: Settings,
    count: int,
    mine: frozenset[int] | None,
) -> _Share:
    """Run the partitions in ``mine`` (None: all) over ``events``; skip the others' events."""
    processors: dict[int, PartitionProcessor] = {}
    records_by_event: list[tuple[int, list[OutputRecord]]] = []
    held_samples: list[int] = []
    # customer -> its partition's process() (None: another share's customer):
    # murmur2 in pure Python is worth caching, and one lookup per event routes it.
    process_of: dict[str, Callable[[InteractionEvent], list[OutputRecord]] | None] = {}
    customers = 0
    # Every share reads every event, so each knows the input's end without asking.
    input_end: int | None = None
    for index, item in enumerate(events):
        if type(item) is not InteractionEvent:
            # Routed by the identity stage (rare): no fast path.
            routed: Routed = item  # type: ignore[assignment]  # not a plain event
            if isinstance(routed, CustomerEvent):
                at = routed.event.occurred_at
                if input_end is None or at > input_end:
                    input_end = at
            partition = partition_for(routed.customer_key, count)
            if mine is None or partition in mine:
                processor = processors.get(partition)
                if processor is None:
                    processor = processors[partition] = PartitionProcessor.from_settings(
                        settings, partition
                    )
                if routed.customer_key not in process_of:
                    customers += 1
                    process_of[routed.customer_key] = processor.process
                if isinstance(routed, CustomerEvent):
                    records = processor.process_released(routed.event, routed.identified_at)
                else:
                    records = processor.unattribute(routed.customer_key, routed.event_ids)
                if records:
                    records_by_event.append((index, records))
            if index % HELD_SAMPLE_EVENTS == 0:
                held_samples.append(sum(p.customers() for p in processors.values()))
            continue
        event: InteractionEvent = item
        at = event.occurred_at
        if input_end is None or at > input_end:
            input_end = at
        customer_id = event.customer_id
        if customer_id in process_of:
            process = process_of[customer_id]
        else:
            partition = partition_for(customer_id, count)
            process = None
            if mine is None or partition in mine:
                customers += 1
                processor = processors.get(partition)
                if processor is None:
                    processor = processors[partition] = PartitionProcessor.from_settings(
                        settings, partition
                    )
                process = processor.process
            process_of[customer_id] = process
        if process is not None:
            records = process(event)
            if records:
                records_by_event.append((index, records))
        if index % HELD_SAMPLE_EVENTS == 0:
            held_samples.append(sum(p.customers() for p in processors.values()))
    end_records = {p: processors[p].end_of_input(input_end) for p in sorted(processors)}
    return _Share(
        records_by_event=records_by_event,
        end_records=end_records,
        stats={p: processors[p].stats for p in sorted(processors)},
        held_samples=held_samples,
        held_at_end=sum(p.customers() for p in processors.values()),
        customers=customers,
        reattribution=_summed(p.reattribution.as_dict() for p in processors.values()),
    )


def _summed(counters: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counter in counters:
        for name, value in counter.items():
            total[name] = total.get(name, 0) + value
    return total


def _as_lines(share: _Share, events: int) -> _Share:
    """``share`` with its records written as JSON lines (:attr:`_Share.lines`)
    and counted for the summary; the records themselves are dropped."""
    ordered = [*share.records_by_event]
    ordered += [(events + partition, records) for partition, records in share.end_records.items()]
    lines = lines_by_output(ordered, OUTPUT_FILES)
    counts = summary_counts(record for _, records in ordered for record in records)
    return dataclasses.replace(
        share, records_by_event=[], end_records={}, lines=lines, counts=counts
    )


def _merge(shares: list[_Share]) -> ReplayResult:
    held_samples = [sum(samples) for samples in zip(*(s.held_samples for s in shares), strict=True)]
    held = sum(s.held_at_end for s in shares)
    stats = {p: st for share in shares for p, st in share.stats.items()}
    result = ReplayResult(
        stats={p: stats[p] for p in sorted(stats)},
        customers_held_peak=max([*held_samples, held]),
        customers_held_at_end=held,
        customers_total=sum(s.customers for s in shares),
    )
    if shares[0].lines is not None:
        result.outputs = merged_lines([share.lines or {} for share in shares], OUTPUT_FILES)
        result.counts = _summed(s.counts for s in shares)
        return result
    # Each event belongs to exactly one share: merging by input index gives the
    # one-process order.
    for _, emitted in heapq.merge(*(s.records_by_event for s in shares), key=itemgetter(0)):
        result.records += emitted
    end_records = {p: r for share in shares for p, r in share.end_records.items()}
    for partition in sorted(end_records):
        result.records += end_records[partition]
    return result


def collapse(records: Iterable[OutputRecord]) -> dict[str, dict[str, dict[str, Any]]]:
    """output name -> natural key -> the last record's ``to_dict()``.

    The canonical form to compare a streaming run with a replay: sinks upsert
    by natural key, so only the last record of each key matters.
    """
    collapsed: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in OUTPUT_FILES}
    for record in records:
        collapsed.setdefault(record.OUTPUT_NAME, {})[record.key] = record.to_dict()
    return collapsed


# The rows that never count, per output: (field, value).
_LINEAGE = {
    "session": ("status", SESSION_SUPERSEDED),
    "need": ("status", NEED_RETRACTED),
    "sla_event": ("kind", SLA_RETRACTED),
}


def standing(collapsed: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict]]:
    """The rows of :func:`collapse` that count, without ``version``.

    Dropped are the rows that never count and only record how a live run got to its
    result: journeys ``superseded``, needs ``retracted``, SLA events ``retracted``.
    Whether a worker sends one depends on what it had already sent when a later
    arriving event changed it (an SLA warning fired before the reply it was waiting
    for arrived); so does ``version``. With identity traffic, events released to a
    customer arrive a batch or two after the replay applies them, and the worker
    equals the replay in this form (docs/architecture.md, "Worker and replay").
    """
    kept: dict[str, dict[str, dict]] = {}
    for name, rows in collapsed.items():
        field_name, never_counts = _LINEAGE.get(name, ("", None))
        kept[name] = {
            key: {f: v for f, v in row.items() if f != "version"}
            for key, row in rows.items()
            if never_counts is None or row.get(field_name) != never_counts
        }
    return kept


def replay_file(
    path: str | Path,
    settings: Settings,
    out_dir: str | Path,
    *,
    wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    keep_records: bool = False,
) -> ReplayResult:
    """Replay a JSON Lines file of events; write the outputs as JSONL into ``out_dir``.

    Lines that do not decode or validate are counted and written to
    ``rejected.jsonl`` with their line number and reason; the rest is replayed.
    Validation is the worker's: an event further than ``limits.max_future_skew``
    ahead of the wall clock (read once, when the replay starts) is rejected too.

    The shares of the partitions write their own records as JSON lines and
    ``result.records`` stays empty, unless ``keep_records`` (the SQL path reads
    them); the files are the same bytes either way.
    """
    with collector_paused():
        return _replay_file(path, settings, Path(out_dir), wall_ms(), keep_records=keep_records)


def _replay_file(
    path: str | Path, settings: Settings, out: Path, now_ms: int, *, keep_records: bool
) -> ReplayResult:
    from pipeline.progress import Progress

    max_future_ms = round(settings.limits.max_future_skew_seconds * 1000)
    out.mkdir(parents=True, exist_ok=True)
    events: list[InteractionEvent] = []
    rejected = 0
    with (out / REJECTED_FILE).open("w", encoding="utf-8") as rejects:
        lines = read_lines(path)
        with Progress("replay", len(lines)) as progress:
            for start in range(0, len(lines), PROGRESS_LINES):
                chunk = lines[start : start + PROGRESS_LINES]
                valid, bad = decode_lines(
                    chunk, settings, now_ms=now_ms, max_future_ms=max_future_ms
                )
                events += valid
                rejected += len(bad)
                rejects.writelines(bad)
                progress.advance(len(chunk))
        del lines
    result = _replay(events, settings, None, None, as_lines=not keep_records)
    result.rejected = rejected
    if result.outputs is None:
        write_outputs(result.records, out)
    else:
        _write_files(result.outputs, out)
    if result.identity_links:
        with (out / IDENTITY_LINKS_FILE).open("w", encoding="utf-8") as links:
            for link in result.identity_links:
                links.write(json.dumps(link.to_dict(), separators=(",", ":")) + "\n")
    print(summary_line(result, out))
    return result


#: Lines decoded between two progress updates.
PROGRESS_LINES = 8192


def write_outputs(records: Iterable[OutputRecord], out_dir: Path) -> None:
    """One JSONL file per output, records in emission order."""
    ordered = [(index, [record]) for index, record in enumerate(records)]
    _write_files(merged_lines([lines_by_output(ordered, OUTPUT_FILES)], OUTPUT_FILES), out_dir)


def _write_files(outputs: dict[str, list[bytes]], out_dir: Path) -> None:
    for name, filename in OUTPUT_FILES.items():
        with (out_dir / filename).open("wb", buffering=WRITE_BUFFER_BYTES) as handle:
            handle.writelines(outputs[name])


#: Bytes buffered per output file before a write: a few large writes, not one per line.
WRITE_BUFFER_BYTES = 1 << 20


def summary_line(result: ReplayResult, out_dir: Path) -> str:
    totals = result.totals()
    counts = result.counts if result.outputs is not None else summary_counts(result.records)
    return (
        f"replay events={totals.events} rejected={result.rejected} "
        f"duplicates={totals.duplicates} late={totals.late} sessions={counts['sessions']} "
        f"sla_breaches={counts['sla_breaches']} journey_signals={counts['journey_signals']} "
        f"out={out_dir}"
    ) + _identity_summary(result.identity)


def _identity_summary(identity: dict[str, int]) -> str:
    """The identity stage's figures (nothing when the input had no identity events)."""
    if not identity:
        return ""
    expired = (
        identity.get("expired_hold", 0)
        + identity.get("expired_max_held", 0)
        + identity.get("expired_at_end", 0)
    )
    return (
        f" identity_events={identity.get('events', 0)} linked={identity.get('links', 0)}"
        f" unlinked={identity.get('unlinks', 0)} expired_to_anonymous={expired}"
        f" reattributed_events={identity.get('unattributed', 0)}"
    )
