"""Identity continuity metrics (issue 16): what the identity processor measures and
how the metrics show it, labelled by channel only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pipeline.contract.event import CONTACT_STARTED
from pipeline.core.identity import IdentityRules
from pipeline.core.identity_stage import IdentityStage
from pipeline.metrics import Metrics
from tests.unit.test_identity_continuity import (
    MINUTE,
    PHONE,
    SETTINGS,
    T0,
    _wrong_link_then_right_one,
    event,
)


def _stage() -> IdentityStage:
    return IdentityStage(IdentityRules.from_settings(SETTINGS.identity), 2)


def test_the_stage_measures_links_delays_expiries_and_reattributions_per_channel():
    stage = _stage()
    for item in _wrong_link_then_right_one():
        stage.process(item)
    chat = {"channel": "chat", "contact": "chat-5", "identifier": ("chat_session", "s-5")}
    stage.process(event("h1", T0 + 20 * MINUTE, CONTACT_STARTED, **chat))
    stage.end_of_input(T0 + 20 * MINUTE)
    measures = stage.take_measures()
    assert measures.linked == {"phone": 2}  # A, then B
    # First held event -> link: to A, then to B once the unlink held the call again.
    assert measures.delays == [("phone", 60.0), ("phone", 60.0)]
    assert measures.reattributed == 3
    assert measures.expired == {"chat": 1}
    assert stage.take_measures().linked == {}  # taken: the next call starts afresh


def test_the_identity_metrics_carry_channels_and_never_an_identifier():
    registry = CollectorRegistry()
    metrics = Metrics(registry, channels=["phone", "chat"])
    stage = _stage()
    for item in _wrong_link_then_right_one():
        stage.process(item)
    metrics.identity.observe(stage.take_measures(), stage.held_now())
    metrics.identity.customers_rebuilt(1)

    def value(name, **labels):
        return registry.get_sample_value(name, labels)

    assert value("cxstream_identity_linked_total", channel="phone") == 2
    assert value("cxstream_identity_reattributed_total") == 3
    assert value("cxstream_identity_customers_rebuilt_total") == 1
    assert value("cxstream_identification_delay_seconds_count", channel="phone") == 2
    assert value("cxstream_identity_held") == 0
    exposed = "\n".join(
        f"{s.name}{s.labels}" for family in registry.collect() for s in family.samples
    )
    assert PHONE not in exposed and "cust-" not in exposed
