"""SLA counters per queue and team with bounded label values (issue 15 part 4)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pipeline.core.records import SlaEvent
from pipeline.metrics import Metrics

T0 = 1_772_438_400_000


def _sla(kind: str, queue: str | None, team: str | None, contact: str = "k1") -> SlaEvent:
    last = "breach" if kind == "retracted" else kind
    return SlaEvent(
        sla_event_id=f"{contact}:chat_first_reply:first_reply:0:{last}",
        kind=kind,
        customer_id="c1",
        contact_id=contact,
        channel="chat",
        policy="chat_first_reply",
        metric="first_reply",
        clock_started_at=T0,
        deadline=T0 + 60_000,
        target_seconds=60.0,
        calendar="24x7",
        fired_at=T0 + 60_000,
        queue=queue,
        team=team,
    )


def _value(registry: CollectorRegistry, queue: str, team: str, kind: str) -> float | None:
    return registry.get_sample_value(
        "cxstream_sla_queue_team_events_total",
        {"channel": "chat", "queue": queue, "team": team, "kind": kind},
    )


def test_configured_queues_and_teams_are_labels_and_every_other_value_is_other() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, channels=["chat"], queues=["cards"], teams=["alpha"])
    for record in (
        _sla("breach", "cards", "alpha"),
        _sla("breach", "cards", "alpha", contact="k2"),
        _sla("breach", "cards", "agent-4711"),  # free text (an agent id) is never a label
        _sla("warning", "mortgage-vip", None),
        _sla("retracted", "cards", "alpha"),
    ):
        metrics.observe_output(record)
    assert _value(registry, "cards", "alpha", "breach") == 2.0
    assert _value(registry, "cards", "other", "breach") == 1.0
    assert _value(registry, "other", "none", "warning") == 1.0
    assert _value(registry, "cards", "alpha", "retracted") == 1.0
    teams = {
        sample.labels["team"]
        for family in registry.collect()
        if family.name == "cxstream_sla_queue_team_events"
        for sample in family.samples
    }
    assert teams == {"alpha", "other", "none"}
    # The per-policy counters are unchanged by the new labels.
    assert (
        registry.get_sample_value(
            "cxstream_sla_breaches_total", {"channel": "chat", "policy": "chat_first_reply"}
        )
        == 3.0
    )


def test_without_configured_labels_every_queue_and_team_is_other_or_none() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.observe_output(_sla("breach", "cards", "alpha"))
    metrics.observe_output(_sla("breach", None, None, contact="k2"))
    assert _value(registry, "other", "other", "breach") == 1.0
    assert _value(registry, "none", "none", "breach") == 1.0
