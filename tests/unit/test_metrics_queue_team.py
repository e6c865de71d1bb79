"""SLA counters per queue and team with bounded label values (issue 15 part 4)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pipeline.core.records import ContactSummary, SlaEvent
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


def _contact(outcome: str, replied: bool, queue: str | None, **flags: object) -> ContactSummary:
    return ContactSummary(
        contact_id="k1",
        customer_id="c1",
        channel="chat",
        session_id="s1",
        started_at=T0,
        ended_at=T0 + 300_000,
        outcome=outcome,
        topic=None,
        first_reply_seconds=30.0 if replied else None,
        first_reply_business_seconds=30.0 if replied else None,
        breached=False,
        events=3,
        first_reply_new=replied,
        queue=queue,
        team="alpha",
        **flags,
    )


def _service(registry: CollectorRegistry, name: str, queue: str) -> float | None:
    labels = {"channel": "chat", "queue": queue, "team": "alpha"}
    return registry.get_sample_value(f"cxstream_sla_{name}_total", labels)


def test_service_level_counters_count_answers_late_answers_and_abandoned_per_queue_and_team() -> (
    None
):
    registry = CollectorRegistry()
    metrics = Metrics(registry, channels=["chat"], queues=["cards"], teams=["alpha"])
    settles = {"settled": True, "settled_new": True}
    for record in (
        # Not settled yet: counts nothing (the first reply only feeds the histogram).
        _contact("resolved", True, "cards"),
        _contact("resolved", True, "cards", service_level="answered_in_target", **settles),
        _contact("resolved", True, "mortgage-vip", service_level="answered_in_target", **settles),
        _contact("abandoned", False, "cards", service_level="abandoned", **settles),
        # A later version of a settled contact (here its containment decision): not twice.
        _contact(
            "abandoned",
            False,
            "cards",
            service_level="abandoned",
            settled=True,
            bot_only=True,
            contained=True,
            contained_new=True,
        ),
        # An abandoned contact that had its first reply, after a breach: answered late.
        _contact("abandoned", True, "cards", service_level="answered_late", **settles),
        # A completed first-reply clock no longer counts by itself: the settle point does.
        _sla("completed", "cards", "alpha"),
        # Settled, not applicable (resolved unanswered): counts nothing.
        _contact("resolved", False, "cards", service_level=None, **settles),
    ):
        metrics.observe_output(record)
    assert _service(registry, "answered", "cards") == 2.0
    assert _service(registry, "answered", "other") == 1.0
    assert _service(registry, "answered_late", "cards") == 1.0
    assert _service(registry, "abandoned", "cards") == 1.0
