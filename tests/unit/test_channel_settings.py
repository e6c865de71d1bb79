"""The channel registry says which channels are synchronous; session.max_open_contact
bounds how long an open synchronous contact holds its journey."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.settings_loader import build_settings


def test_visits_calls_chats_and_meetings_are_synchronous_and_web_messages_are_not():
    settings = build_settings()
    assert settings.channels.synchronous == frozenset({"branch", "phone", "chat", "web_meeting"})


def test_an_open_contact_holds_its_journey_four_hours_by_default():
    assert build_settings().core.max_open_contact_seconds == 4 * 3600.0


def test_max_open_contact_is_a_duration():
    settings = build_settings({"session": {"max_open_contact": "90m"}})
    assert settings.core.max_open_contact_seconds == 5400.0


def test_a_synchronous_flag_that_is_not_a_boolean_is_refused():
    with pytest.raises(ConfigError, match=r"channels\.kiosk\.synchronous must be true or false"):
        build_settings({"channels": {"kiosk": {"kind": "physical", "synchronous": "yes"}}})


def test_the_processor_of_the_settings_holds_journeys_of_the_synchronous_channels():
    from pipeline.core.processor import PartitionProcessor

    processor = PartitionProcessor.from_settings(build_settings())
    assert processor.rules.synchronous == frozenset({"branch", "phone", "chat", "web_meeting"})
    assert processor.rules.max_open_contact_ms == 4 * 3600 * 1000
