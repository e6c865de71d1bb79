"""The ops wall screen's status document, built from a hand-made registry."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from agents.ops_page import channel_views
from pipeline.core.records import SLA_BREACH, SLA_WARNING, SWITCH_FAILURE, JourneySignal, SlaEvent
from pipeline.metrics import Metrics
from pipeline.ops_status import (
    BREACH,
    NO_TARGET,
    OK,
    WARNING,
    ChannelView,
    CounterWindow,
    build_status,
    channel_state,
    flatten,
    switch_failure_totals,
)
from pipeline.settings_loader import build_settings

CHANNELS = [
    ChannelView("web_message", "Secure web message", 0.8),
    ChannelView("chat", "Chat", 0.8),
    ChannelView("branch", "Branch office", None),
]


def sla(kind: str, channel: str, policy: str) -> SlaEvent:
    return SlaEvent(
        sla_event_id=f"c1:{policy}:{kind}",
        kind=kind,
        customer_id="cust-1",
        contact_id="c1",
        channel=channel,
        policy=policy,
        metric="first_reply",
        clock_started_at=0,
        deadline=60_000,
        target_seconds=60.0,
        calendar="24x7",
        fired_at=60_000,
    )


def switch(from_channel: str, to_channel: str) -> JourneySignal:
    return JourneySignal(
        signal_id=f"c1:{from_channel}:{to_channel}",
        kind=SWITCH_FAILURE,
        customer_id="cust-1",
        from_contact_id="c1",
        from_channel=from_channel,
        from_outcome="unresolved",
        to_contact_id="c2",
        to_channel=to_channel,
        gap_seconds=300.0,
        topic="cards",
        occurred_at=360_000,
    )


@pytest.fixture
def metrics() -> Metrics:
    metrics = Metrics(CollectorRegistry(), channels=["web_message", "chat", "branch"])
    metrics.set_worker_info("0.1.0", "abc123", "interpreted")
    for channel, event_type, times in [
        ("web_message", "contact_started", 4),
        ("chat", "contact_started", 3),
        ("chat", "customer_message", 5),
    ]:
        for _ in range(times):
            metrics.observe_event(channel, event_type)
    metrics.dead_letter("decode", "ContractError")
    metrics.dead_letter("validate", "ValidationError")
    metrics.dead_letter("validate", "ValidationError")
    for record in [
        sla(SLA_BREACH, "web_message", "web_message_first_reply"),
        sla(SLA_BREACH, "web_message", "web_message_first_reply"),
        sla(SLA_WARNING, "web_message", "web_message_first_reply"),
        sla(SLA_WARNING, "chat", "chat_first_reply"),
        sla(SLA_WARNING, "chat", "chat_next_reply"),
        switch("chat", "phone"),
        switch("chat", "branch"),
        switch("web_message", "phone"),
    ]:
        metrics.observe_output(record)
    metrics.set_open_sessions(17)
    metrics.set_oldest_unanswered("web_message", 6480.0, 0.9)
    metrics.set_oldest_unanswered("chat", 12.5, 12.5 / 60)
    metrics.set_oldest_unanswered("branch", 0.0, 0.0)
    metrics.set_lag("cx.interactions", 0, 3)
    metrics.set_lag("cx.interactions", 1, 4)
    return metrics


def status_of(metrics: Metrics, last_hour: dict[str, float] | None = None) -> dict:
    return build_status(
        flatten(metrics.registry.collect()),
        CHANNELS,
        switch_failures_last_hour=last_hour or {},
        generated_at=1_700_000_100.0,
        started_at=1_700_000_000.0,
    )


def test_header_totals_sum_the_series_over_their_labels(metrics: Metrics) -> None:
    assert status_of(metrics)["totals"] == {
        "events_consumed": 12.0,
        "open_sessions": 17.0,
        "dead_letters": 3.0,
        "consumer_lag": 7.0,
    }


def test_channel_cards_follow_the_given_order_with_their_figures(metrics: Metrics) -> None:
    cards = status_of(metrics, {"chat": 2.0})["channels"]

    assert [card["channel"] for card in cards] == ["web_message", "chat", "branch"]
    assert cards[0] == {
        "channel": "web_message",
        "display_name": "Secure web message",
        "state": WARNING,
        "sla_breaches": 2.0,
        "sla_warnings": 1.0,
        "oldest_unanswered_seconds": 6480.0,
        "oldest_unanswered_ratio": 0.9,
        "switch_failures_total": 1.0,
        "switch_failures_last_hour": 0.0,
    }
    assert cards[1]["sla_warnings"] == 2.0  # summed over both chat policies
    assert cards[1]["switch_failures_total"] == 2.0
    assert cards[1]["switch_failures_last_hour"] == 2.0
    assert cards[1]["state"] == OK
    assert cards[2]["state"] == NO_TARGET


def test_a_channel_only_seen_in_the_metrics_gets_a_card_of_its_own() -> None:
    metrics = Metrics(CollectorRegistry())  # no channel registry: every value is kept
    metrics.observe_output(sla(SLA_BREACH, "video_branch", "video_first_reply"))

    cards = status_of(metrics)["channels"]

    assert [card["channel"] for card in cards] == ["web_message", "chat", "branch", "video_branch"]
    assert cards[-1]["sla_breaches"] == 1.0


def test_worker_identity_and_times_are_passed_through(metrics: Metrics) -> None:
    status = status_of(metrics)

    assert status["worker"] == {"version": "0.1.0", "config_hash": "abc123"}
    assert (status["generated_at"], status["started_at"]) == (1_700_000_100.0, 1_700_000_000.0)


def test_the_status_is_plain_json(metrics: Metrics) -> None:
    status = status_of(metrics)

    assert json.loads(json.dumps(status)) == status


def test_an_empty_registry_gives_zero_figures_for_every_configured_channel() -> None:
    status = status_of(Metrics(CollectorRegistry(), channels=["web_message", "chat", "branch"]))

    assert status["totals"] == {
        "events_consumed": 0.0,
        "open_sessions": 0.0,
        "dead_letters": 0.0,
        "consumer_lag": 0.0,
    }
    assert [(c["channel"], c["sla_breaches"], c["state"]) for c in status["channels"]] == [
        ("web_message", 0.0, OK),
        ("chat", 0.0, OK),
        ("branch", 0.0, NO_TARGET),
    ]


@pytest.mark.parametrize(
    ("ratio", "warning_ratio", "expected"),
    [
        (0.0, 0.8, OK),
        (0.79, 0.8, OK),
        (0.8, 0.8, WARNING),
        (0.99, 0.8, WARNING),
        (1.0, 0.8, BREACH),
        (3.2, 0.8, BREACH),
        (5.0, None, NO_TARGET),
    ],
)
def test_channel_state_by_share_of_target(
    ratio: float, warning_ratio: float | None, expected: str
) -> None:
    assert channel_state(ratio, warning_ratio) == expected


def test_switch_failures_are_counted_by_the_channel_the_customer_left(metrics: Metrics) -> None:
    totals = switch_failure_totals(flatten(metrics.registry.collect()))

    assert totals == {"chat": 2.0, "web_message": 1.0}


def test_window_counts_since_the_first_snapshot_while_younger_than_the_window() -> None:
    window = CounterWindow(window_seconds=3600)
    window.record(0.0, {})
    window.record(5.0, {"chat": 2.0})

    assert window.increase(100.0, {"chat": 3.0, "phone": 1.0}) == {"chat": 3.0, "phone": 1.0}


def test_window_subtracts_the_newest_snapshot_at_least_an_hour_old() -> None:
    window = CounterWindow(window_seconds=3600)
    for at, chat in [(0.0, 0.0), (1000.0, 4.0), (2000.0, 6.0), (3000.0, 9.0)]:
        window.record(at, {"chat": chat})

    assert window.increase(4700.0, {"chat": 10.0}) == {"chat": 6.0}  # baseline at 1000 s
    assert window.increase(5700.0, {"chat": 10.0}) == {"chat": 4.0}  # baseline at 2000 s


def test_window_keeps_only_the_snapshots_it_still_needs() -> None:
    window = CounterWindow(window_seconds=60)
    for second in range(0, 600, 5):
        window.record(float(second), {"chat": float(second)})

    # 60 s / 5 s = 12 snapshots inside the window, plus the baseline at the cutoff.
    assert len(window) == 13
    assert window.increase(595.0, {"chat": 595.0}) == {"chat": 60.0}


def test_window_treats_a_counter_that_went_down_as_reset() -> None:
    window = CounterWindow(window_seconds=60)
    window.record(0.0, {"chat": 50.0})

    assert window.increase(120.0, {"chat": 7.0}) == {"chat": 7.0}


def test_window_refuses_snapshots_out_of_time_order() -> None:
    window = CounterWindow()
    window.record(10.0, {})

    with pytest.raises(ValueError):
        window.record(9.0, {})


def test_channel_views_put_web_messages_first_with_their_warning_share() -> None:
    views = channel_views(build_settings({}))

    assert views[0] == ChannelView("web_message", "Secure web message", 0.8)
    assert [view.key for view in views[1:]] == ["branch", "phone", "chat", "web_meeting"]
    assert {view.key: view.warning_ratio for view in views}["branch"] is None
