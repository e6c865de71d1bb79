"""Service level from the metrics equals the SQL views on the same records (issue 15 part 4),
under shuffled, late and duplicate delivery.

The same output records go to :class:`pipeline.metrics.Metrics` (as the worker's
stream handler gives them) and to a SQLite store; per channel, queue and team
the counters answered, answered late and abandoned give the numbers of the
``service_level`` view, with queue and team bounded as Prometheus sees them.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import zlib
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.contract.event import InteractionEvent
from pipeline.metrics import Metrics
from pipeline.replay import replay_events
from pipeline.replay_sql import write_records_to_sql
from pipeline.settings import bounded_label
from pipeline.settings_loader import build_settings
from pipeline.tools.simulator import SimulatorConfig, generate

# Shuffled delivery: 30 % of the events out of order, 5 % late, duplicates, and the
# slow arrivals that make web messages breach. Each contact counts once, at its
# settle point, so the metric equals SQL whatever the order (docs/ops.md "Service
# level"); before the settle point, these seeds gave 1, 3 and 3 differing cells.
SIM = SimulatorConfig(
    customers=120,
    count=2500,
    seed=23,
    arrival_rate_per_hour=120,
    out_of_order_share=0.3,
    late_share=0.05,
)
QUEUES = ("cards", "loans", "mortgage", None)
TEAMS = ("alpha", "beta", "gamma", None)
# Prometheus knows only some of them: mortgage and gamma read "other".
LABELS = {"queues": ["cards", "loans"], "teams": ["alpha", "beta"]}

Key = tuple[str, str, str]


def _tagged(event: InteractionEvent) -> InteractionEvent:
    """The event with a queue and team picked by its contact (None for some)."""
    spread = zlib.crc32(event.contact_id.encode())
    return dataclasses.replace(event, queue=QUEUES[spread % 4], team=TEAMS[(spread // 4) % 4])


def _events(seed: int = SIM.seed) -> list[InteractionEvent]:
    sim = dataclasses.replace(SIM, seed=seed)
    events = [item.event for item in generate(sim) if item.event is not None]
    abandoned = {e.contact_id for e in events if e.outcome == "abandoned"}
    # Half the customers who gave up had no reply at all before they left.
    unanswered = {c for c in abandoned if zlib.crc32(c.encode()) % 2 == 0}
    return [
        _tagged(e) for e in events if not (e.contact_id in unanswered and e.type == "agent_reply")
    ]


def _from_metrics(registry: CollectorRegistry) -> dict[Key, tuple[int, int, int]]:
    counts: dict[str, Counter[Key]] = {}
    for family in registry.collect():
        if family.name in ("cxstream_sla_answered", "cxstream_sla_answered_late",
                           "cxstream_sla_abandoned"):  # fmt: skip
            bucket = counts.setdefault(family.name, Counter())
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    key = (labels["channel"], labels["queue"], labels["team"])
                    bucket[key] += int(sample.value)
    answered = counts.get("cxstream_sla_answered", Counter())
    late = counts.get("cxstream_sla_answered_late", Counter())
    abandoned = counts.get("cxstream_sla_abandoned", Counter())
    return {
        key: (answered[key], answered[key] - late[key], abandoned[key])
        for key in set(answered) | set(abandoned)
    }


def _from_sql(database: Path) -> dict[Key, tuple[int, int, int]]:
    """The service_level view's counts, its NULL/unknown queues and teams bounded."""
    totals: dict[Key, tuple[int, int, int]] = {}
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT channel, queue, team, answered, answered_within_target, abandoned"
            " FROM service_level"
        ).fetchall()
    for channel, queue, team, answered, within, abandoned in rows:
        key = (
            channel,
            bounded_label(queue, tuple(LABELS["queues"])),
            bounded_label(team, tuple(LABELS["teams"])),
        )
        before = totals.get(key, (0, 0, 0))
        totals[key] = (before[0] + answered, before[1] + within, before[2] + abandoned)
    return {key: counts for key, counts in totals.items() if counts[0] or counts[2]}


@pytest.mark.parametrize("seed", [23, 5, 7])
def test_service_level_from_the_metrics_equals_the_sql_view_per_channel_queue_and_team(
    tmp_path: Path, seed: int
) -> None:
    database = tmp_path / "cx.db"
    settings = build_settings({"sql": {"url": f"sqlite:///{database}"}, "labels": LABELS})
    records = replay_events(_events(seed), settings, partitions=4).records
    registry = CollectorRegistry()
    # As the worker builds it (agents/worker.py).
    metrics = Metrics(registry, queues=settings.labels.queues, teams=settings.labels.teams)
    for record in records:
        metrics.observe_output(record)
    write_records_to_sql(records, settings)

    in_metrics = _from_metrics(registry)
    in_sql = _from_sql(database)
    assert in_metrics == in_sql
    # The traffic exercises every part of the ratio and every kind of label value.
    answered, within, abandoned = (sum(c[i] for c in in_sql.values()) for i in range(3))
    assert answered > 300
    assert 0 < within < answered
    assert abandoned > 3
    assert {key[1] for key in in_sql} == {"cards", "loans", "other", "none"}
    assert {key[2] for key in in_sql} == {"alpha", "beta", "other", "none"}
