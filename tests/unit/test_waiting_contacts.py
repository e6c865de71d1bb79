"""``cxstream_waiting_contacts{channel}``: contacts whose customer waits for a reply now."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from pipeline.contract.event import AGENT_REPLY
from pipeline.metrics import Metrics
from pipeline.runtime.gauges import update_gauges
from pipeline.streaming import PartitionGauge
from tests.unit.core_standins import MINUTE, T0, StandInPolicy, ev, make_processor

POLICIES = (
    StandInPolicy("chat_first_reply", "chat", 2 * MINUTE),
    StandInPolicy("email_first_reply", "email", 60 * MINUTE),
)


def test_processor_counts_each_contact_with_a_running_clock_once_per_channel() -> None:
    processor = make_processor(policies=POLICIES)
    for event in [
        ev(T0, customer="c1", contact="k1", channel="chat"),
        ev(T0 + 1000, customer="c1", contact="k1", channel="chat"),  # still one contact
        ev(T0 + 2000, customer="c2", contact="k2", channel="chat"),
        ev(T0 + 3000, customer="c3", contact="k3", channel="email"),
        ev(
            T0 + 4000, customer="c3", contact="k3", channel="email", type=AGENT_REPLY, actor="agent"
        ),
    ]:
        processor.process(event)

    assert processor.waiting_contacts() == {"chat": 2}


def update(metrics: Metrics, channels: tuple[str, ...], gauges: dict[int, PartitionGauge]) -> None:
    """The worker's gauge update alone: no app, no loop, no broker (lag unknown)."""
    update_gauges(
        metrics,
        SimpleNamespace(channels=SimpleNamespace(keys=channels)),  # type: ignore[arg-type]
        gauges,
        input_topic="cx.interactions",
        applied_offsets={},
        log_end=lambda partition: None,
        targets={"chat": 120.0},
    )


def test_worker_gauge_sums_waiting_contacts_over_its_partitions_and_zeroes_the_rest() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, channels=("chat", "email", "phone"))
    gauges = {
        0: PartitionGauge(1, {"chat": T0}, T0 + 60_000, {"chat": 2, "email": 1}),
        1: PartitionGauge(1, {"chat": T0 + 30_000}, T0 + 90_000, {"chat": 3}),
        2: PartitionGauge(0, {}, None),
    }

    update(metrics, ("chat", "email", "phone"), gauges)

    def waiting(channel: str) -> float | None:
        return registry.get_sample_value("cxstream_waiting_contacts", {"channel": channel})

    assert (waiting("chat"), waiting("email"), waiting("phone")) == (5.0, 1.0, 0.0)
    assert (
        registry.get_sample_value("cxstream_oldest_unanswered_seconds", {"channel": "chat"}) == 60.0
    )

    update(metrics, ("chat", "email", "phone"), {0: PartitionGauge(0, {}, T0 + 120_000, {})})
    assert waiting("chat") == 0.0


def test_worker_gauge_shows_the_lag_of_the_identity_and_re_keyed_topics_too() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, channels=("chat",))

    update_gauges(
        metrics,
        SimpleNamespace(channels=SimpleNamespace(keys=("chat",))),  # type: ignore[arg-type]
        {0: PartitionGauge(0, {}, None)},
        input_topic="cx.interactions",
        applied_offsets={0: 9},
        log_end=lambda partition: 10,
        targets={},
        # (topic, partition, last applied offset or None, log end or None)
        side_positions=[
            ("cx.identity", 0, 4, 12),
            ("cx.interactions-rekeyed", 0, None, 3),
            ("cx.interactions-rekeyed", 1, 7, None),  # end unknown: left as it was
        ],
    )

    def lag(topic: str, partition: int) -> float | None:
        labels = {"topic": topic, "partition": str(partition)}
        return registry.get_sample_value("cxstream_consumer_lag", labels)

    assert lag("cx.interactions", 0) == 0.0
    assert lag("cx.identity", 0) == 7.0
    assert lag("cx.interactions-rekeyed", 0) == 3.0
    assert lag("cx.interactions-rekeyed", 1) is None
