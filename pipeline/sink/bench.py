"""Sink benchmark: upserted rows per second through SqlStore.write.

    python -m pipeline.sink.bench URL [--rows 100000] [--batch 1000]

Generates a realistic, time-ordered mix of contact, session, SLA and journey
records (ids carry a random run prefix, so an existing database is not
overwritten), writes them in batches, then writes the same batches again to
show what redelivery (idempotent upserts plus channel_stats re-derivation) costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import make_url

from pipeline.core.records import (
    FALSE_RESOLUTION,
    SESSION_FINAL,
    SESSION_OPEN,
    SLA_BREACH,
    SLA_WARNING,
    SWITCH_FAILURE,
    ContactSummary,
    JourneySignal,
    SessionRecord,
    SlaEvent,
)
from pipeline.sink.store import SqlStore

_CHANNELS = ("chat", "phone", "web_message", "branch", "web_meeting")
_CHANNEL_WEIGHTS = (40, 25, 20, 5, 10)
_OUTCOMES = ("resolved", "unresolved", "abandoned", "transferred")
_OUTCOME_WEIGHTS = (70, 15, 10, 5)
_TOPICS = ("card", "loan", "payments", "login", "mortgage", None)
_START_MS = 1_772_438_400_000  # 2026-03-02T08:00:00Z: a Monday morning
_SESSIONS_PER_SECOND = 5  # arrival rate of new journeys in the generated stream


def generate_records(rows: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """``rows`` output records in emission order, as (output_name, record_dict)."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:12]
    # A random day per run keeps repeated runs on one database out of each
    # other's channel_stats buckets, so every run measures the same work.
    start_ms = _START_MS + random.randrange(3650) * 86_400_000
    emitted: list[tuple[int, str, dict[str, Any]]] = []
    session_no = 0
    while len(emitted) < rows:
        session_no += 1
        emitted.extend(_journey(rng, f"{run}-{session_no}", start_ms, session_no))
    emitted.sort(key=lambda item: item[0])
    return [(name, record) for _, name, record in emitted[:rows]]


def _journey(
    rng: random.Random, sid: str, start_ms: int, no: int
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    customer = f"cust-{rng.randrange(200_000)}"
    at = start_ms + no * 1000 // _SESSIONS_PER_SECOND + rng.randrange(1000)
    started = at
    path: list[str] = []
    outcomes: list[str] = []
    contact_ids: list[str] = []
    breaches = switch_failures = 0
    for index in range(rng.choice((1, 1, 1, 2, 2, 3))):
        channel = rng.choices(_CHANNELS, _CHANNEL_WEIGHTS)[0]
        outcome = rng.choices(_OUTCOMES, _OUTCOME_WEIGHTS)[0]
        contact_id = f"{sid}-c{index}"
        reply = rng.lognormvariate(4, 1.2)
        duration = int(reply * 1000) + rng.randrange(60_000, 900_000)
        topic = rng.choice(_TOPICS)
        breached = reply > 120
        if breached:
            breaches += 1
            for kind, fired in ((SLA_WARNING, at + 96_000), (SLA_BREACH, at + 120_000)):
                sla = SlaEvent(
                    f"{contact_id}:{channel}_first_reply:first_reply:0:{kind}",
                    kind, customer, contact_id, channel, f"{channel}_first_reply",
                    "first_reply", at, at + 120_000, 120.0, "24x7", fired,
                )  # fmt: skip
                yield fired, SlaEvent.OUTPUT_NAME, sla.to_dict()
        contact = ContactSummary(
            contact_id, customer, channel, sid, at, at + duration, outcome, topic,
            round(reply, 3), round(reply, 3), breached, rng.randrange(3, 30),
        )  # fmt: skip
        yield at + duration, ContactSummary.OUTPUT_NAME, contact.to_dict()
        if path and outcomes[-1] in ("unresolved", "abandoned"):
            kind = SWITCH_FAILURE if channel != path[-1] else FALSE_RESOLUTION
            switch_failures += kind == SWITCH_FAILURE
            signal = JourneySignal(
                f"{contact_ids[-1]}>{contact_id}:{kind}", kind, customer, contact_ids[-1],
                path[-1], outcomes[-1], contact_id, channel, 300.0, topic, at,
            )  # fmt: skip
            yield at, JourneySignal.OUTPUT_NAME, signal.to_dict()
        path.append(channel)
        outcomes.append(outcome)
        contact_ids.append(contact_id)
        at += duration + rng.randrange(60_000, 600_000)
    opened = SessionRecord(
        session_id=sid, customer_id=customer, status=SESSION_OPEN, started_at=started,
        ended_at=at, channel_path=path, contacts=len(path), events=10 * len(path),
        channel_switches=sum(a != b for a, b in itertools.pairwise(path)),
        first_contact_resolved=outcomes[0] == "resolved",
        resolved_at_end=outcomes[-1] == "resolved", switch_failures=switch_failures,
        sla_breaches=breaches, nps_score=None, contact_ids=contact_ids, version=0,
    )  # fmt: skip
    yield started + 1000, "session", opened.to_dict()
    nps = rng.choice((None, None, rng.randrange(11)))
    final = dataclasses.replace(opened, status=SESSION_FINAL, nps_score=nps, version=1)
    yield at + 1_800_000, "session", final.to_dict()


def _write_all(store: SqlStore, records: list, batch: int) -> float:
    began = time.perf_counter()
    for start in range(0, len(records), batch):
        store.write(records[start : start + batch])
    return time.perf_counter() - began


def bench_sink(url: str, rows: int = 100_000, batch: int = 1000) -> dict[str, Any]:
    """Write ``rows`` generated records twice; print and return rows/s of each pass."""
    records = generate_records(rows)
    store = SqlStore(url)
    try:
        store.create_schema()
        first = _write_all(store, records, batch)
        again = _write_all(store, records, batch)
    finally:
        store.dispose()
    dialect = make_url(url).get_backend_name()
    result = {
        "dialect": dialect,
        "rows": len(records),
        "batch": batch,
        "upserted_rows_per_s": round(len(records) / first),
        "redelivered_rows_per_s": round(len(records) / again),
    }
    print(
        f"sink url={dialect} rows={len(records)} batch={batch} "
        f"upserted_rows_per_s={result['upserted_rows_per_s']}"
    )
    print(
        f"sink url={dialect} rows={len(records)} batch={batch} redelivered "
        f"upserted_rows_per_s={result['redelivered_rows_per_s']}"
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="SQLAlchemy URL, e.g. sqlite:///var/bench.db")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    bench_sink(args.url, rows=args.rows, batch=args.batch)


if __name__ == "__main__":
    main()
