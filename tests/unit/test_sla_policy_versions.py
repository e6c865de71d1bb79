"""Policy versions (issue 15 part 5) and the contact's queue and team on SLA records (part 4).

A live worker restarted with a changed policy restores its customers' state:
the clocks that started before the change keep their deadline, target and
version; clocks that start after it use the new definition.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.contract.event import AGENT_REPLY, InteractionEvent
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import ContactSummary, SlaEvent
from pipeline.errors import ConfigError
from pipeline.settings import PolicySpec, bounded_label, policy_digest
from pipeline.settings_loader import build_settings

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
MINUTE = 60_000
HOUR = 60 * MINUTE


def _policy(target: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "web_message_first_reply",
        "channel": "web_message",
        "metric": "first_reply",
        "target": target,
        "calendar": "24x7",
        "warning_share": 0.5,
        **extra,
    }


def _event(at: int, contact: str, type: str = "customer_message", **extra: Any) -> InteractionEvent:
    return InteractionEvent(
        event_id=f"{contact}-{at}-{type}",
        occurred_at=at,
        customer_id="c1",
        channel="web_message",
        contact_id=contact,
        type=type,
        actor="agent" if type == AGENT_REPLY else "customer",
        **extra,
    )


def _sla(records: list[Any]) -> list[SlaEvent]:
    return [r for r in records if isinstance(r, SlaEvent)]


def test_a_policy_version_is_an_eight_digit_digest_that_changes_with_the_target() -> None:
    two_hours = build_settings({"sla_policies": [_policy("2h")]}).policies[0]
    four_hours = build_settings({"sla_policies": [_policy("4h")]}).policies[0]
    assert two_hours.version is None
    assert two_hours.effective_version == policy_digest(two_hours)
    assert len(two_hours.effective_version) == 8
    int(two_hours.effective_version, 16)
    assert four_hours.effective_version != two_hours.effective_version
    # The same definition gives the same version on every machine and run.
    assert build_settings({"sla_policies": [_policy("2h")]}).policies[0].effective_version == (
        two_hours.effective_version
    )


def test_an_explicit_version_key_wins_over_the_digest() -> None:
    spec = build_settings({"sla_policies": [_policy("2h", version="2026-03")]}).policies[0]
    assert spec.effective_version == "2026-03"


def test_a_directly_built_spec_without_version_gets_the_digest() -> None:
    spec = PolicySpec("p", "chat", "first_reply", 60.0, calendar="24x7")
    assert spec.effective_version == policy_digest(spec)


def test_every_sla_event_records_the_version_of_its_policy() -> None:
    settings = build_settings({"sla_policies": [_policy("2h", version="v7")]})
    processor = PartitionProcessor.from_settings(settings)
    out = processor.process(_event(T0, "k1"))
    out += processor.advance(T0 + 3 * HOUR)
    fired = _sla(out)
    assert [(r.kind, r.policy_version) for r in fired] == [("warning", "v7"), ("breach", "v7")]


def test_a_changed_policy_applies_to_clocks_started_after_it_and_old_clocks_keep_theirs() -> None:
    old = build_settings({"sla_policies": [_policy("2h")]})
    new = build_settings({"sla_policies": [_policy("4h")]})
    old_version = old.policies[0].effective_version
    new_version = new.policies[0].effective_version

    # Under the old policy: contact k1's clock starts; the worker persists state.
    before = PartitionProcessor.from_settings(old)
    before.process(_event(T0, "k1"))
    state = before.take_dirty()
    clock = before.clock_ms
    assert clock is not None

    # The worker restarts with the new policy and restores the customer.
    after = PartitionProcessor.from_settings(new)
    after.load_clock(clock)
    for customer_id, data in state.items():
        assert data is not None
        after.load_state(customer_id, data)
    # Same customer, a new contact whose clock starts after the change.
    out = after.process(_event(T0 + 10 * MINUTE, "k2"))
    out += after.advance(T0 + 6 * HOUR)
    breaches = sorted(
        (r.contact_id, r.deadline, r.target_seconds, r.policy_version)
        for r in _sla(out)
        if r.kind == "breach"
    )
    assert breaches == [
        ("k1", T0 + 2 * HOUR, 7200.0, old_version),
        ("k2", T0 + 10 * MINUTE + 4 * HOUR, 14400.0, new_version),
    ]


def test_sla_events_and_the_contact_summary_carry_the_latest_queue_and_team() -> None:
    settings = build_settings({"sla_policies": [_policy("2h")]})
    processor = PartitionProcessor.from_settings(settings)
    out = processor.process(_event(T0, "k1", queue="cards", team="helsinki-1"))
    # An event without them does not clear them; a later named team wins.
    out += processor.process(_event(T0 + MINUTE, "k1"))
    out += processor.process(_event(T0 + 2 * MINUTE, "k1", team="tampere-2"))
    out += processor.advance(T0 + 3 * HOUR)
    out += processor.process(_event(T0 + 4 * HOUR, "k1", type=AGENT_REPLY))
    out += processor.process(_event(T0 + 5 * HOUR, "k1", type="contact_ended", outcome="resolved"))
    fired = _sla(out)
    assert [(r.kind, r.queue, r.team) for r in fired] == [
        ("warning", "cards", "tampere-2"),
        ("breach", "cards", "tampere-2"),
        ("completed", "cards", "tampere-2"),
    ]
    summaries = [r for r in out if isinstance(r, ContactSummary)]
    assert (summaries[-1].queue, summaries[-1].team) == ("cards", "tampere-2")


def test_queue_and_team_survive_a_restart_from_state() -> None:
    settings = build_settings({"sla_policies": [_policy("2h")]})
    before = PartitionProcessor.from_settings(settings)
    before.process(_event(T0, "k1", queue="loans", team="espoo"))
    state = before.take_dirty()
    after = PartitionProcessor.from_settings(settings)
    after.load_clock(T0)
    after.load_state("c1", state["c1"] or b"")
    out = after.advance(T0 + 3 * HOUR)
    assert {(r.queue, r.team) for r in _sla(out)} == {("loans", "espoo")}


def test_labels_are_bounded_to_the_configured_queues_and_teams() -> None:
    settings = build_settings({"labels": {"queues": ["cards"], "teams": ["espoo"]}})
    assert settings.labels.queues == ("cards",)
    assert bounded_label("cards", settings.labels.queues) == "cards"
    assert bounded_label("agent-4711", settings.labels.teams) == "other"
    assert bounded_label(None, settings.labels.teams) == "none"


def test_other_and_none_cannot_be_configured_as_label_values() -> None:
    with pytest.raises(ConfigError, match="reserved"):
        build_settings({"labels": {"teams": ["other"]}})
