"""``cxstream_waiting_contacts{channel}``: contacts whose customer waits for a reply now."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from agents.process import ProcessRole
from pipeline.contract.event import AGENT_REPLY
from pipeline.metrics import Metrics
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


def role_with(metrics: Metrics, channels: tuple[str, ...]) -> ProcessRole:
    """The role's gauge update alone: no app, no core, no broker (lag is skipped)."""
    role = ProcessRole.__new__(ProcessRole)
    role.metrics = metrics
    role.settings = SimpleNamespace(channels=SimpleNamespace(keys=channels))  # type: ignore[assignment]
    role._tightest_target = {"chat": 120.0}
    role.input_topic_name = "cx.interactions"

    def no_highwater(tp: Any) -> int:
        raise RuntimeError("no broker in a unit test")

    role.app = SimpleNamespace(consumer=SimpleNamespace(highwater=no_highwater))  # type: ignore[assignment]
    role.core = SimpleNamespace(applied_offsets={})  # type: ignore[assignment]
    return role


def test_worker_gauge_sums_waiting_contacts_over_its_partitions_and_zeroes_the_rest() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, channels=("chat", "email", "phone"))
    role = role_with(metrics, ("chat", "email", "phone"))
    gauges = {
        0: PartitionGauge(1, {"chat": T0}, T0 + 60_000, {"chat": 2, "email": 1}),
        1: PartitionGauge(1, {"chat": T0 + 30_000}, T0 + 90_000, {"chat": 3}),
        2: PartitionGauge(0, {}, None),
    }

    role._update_gauges(gauges)

    def waiting(channel: str) -> float | None:
        return registry.get_sample_value("cxstream_waiting_contacts", {"channel": channel})

    assert (waiting("chat"), waiting("email"), waiting("phone")) == (5.0, 1.0, 0.0)
    assert (
        registry.get_sample_value("cxstream_oldest_unanswered_seconds", {"channel": "chat"}) == 60.0
    )

    role._update_gauges({0: PartitionGauge(0, {}, T0 + 120_000, {})})
    assert waiting("chat") == 0.0
