import dataclasses

import pytest

from pipeline.contract.event import InteractionEvent
from pipeline.contract.validate import validate
from pipeline.errors import ValidationError
from pipeline.settings import build_settings

CHANNELS = build_settings().channels

VALID = InteractionEvent(
    event_id="e-1",
    occurred_at=1_772_439_300_000,
    customer_id="cust-1",
    channel="web_message",
    contact_id="wm-1",
    type="customer_message",
    actor="customer",
    producer="online-bank/5.1",
)


def _rejected_field(**changes) -> str | None:
    with pytest.raises(ValidationError) as caught:
        validate(dataclasses.replace(VALID, **changes), CHANNELS)
    assert str(caught.value).startswith(f"{caught.value.field}: ")
    return caught.value.field


def test_valid_event_is_returned_unchanged():
    assert validate(VALID, CHANNELS) is VALID


def test_contact_ended_with_outcome_and_feedback_with_score_are_valid():
    ended = dataclasses.replace(VALID, type="contact_ended", actor="agent", outcome="resolved")
    feedback = dataclasses.replace(VALID, type="feedback", score=10)
    assert validate(ended, CHANNELS) == ended
    assert validate(feedback, CHANNELS) == feedback


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"customer_id": "  "}, "customer_id"),
        ({"contact_id": ""}, "contact_id"),
        ({"producer": ""}, "producer"),
        ({"channel": "carrier_pigeon"}, "channel"),
        ({"type": "unknown"}, "type"),
        ({"type": "video_call_started"}, "type"),
        ({"actor": "robot"}, "actor"),
        ({"outcome": "resolved"}, "outcome"),
        ({"type": "contact_ended", "outcome": "solved"}, "outcome"),
        ({"score": 7}, "score"),
        ({"type": "feedback", "score": 11}, "score"),
        ({"type": "feedback", "score": -1}, "score"),
        ({"occurred_at": 1_772_439_300}, "occurred_at"),
        ({"occurred_at": 1_772_439_300_000_000}, "occurred_at"),
    ],
)
def test_rule_breaking_event_is_rejected_naming_the_field(changes, field):
    assert _rejected_field(**changes) == field


def test_unknown_channel_message_lists_the_registry():
    with pytest.raises(ValidationError) as caught:
        validate(dataclasses.replace(VALID, channel="fax"), CHANNELS)
    assert str(caught.value) == (
        "channel: 'fax' is not in the channel registry "
        "(branch, phone, chat, web_meeting, web_message); add it to the config first"
    )


def test_a_channel_added_in_config_is_accepted_without_schema_change():
    channels = build_settings({"channels": {"video_branch": {"kind": "digital"}}}).channels
    event = dataclasses.replace(VALID, channel="video_branch")
    assert validate(event, channels) == event


def test_year_2000_is_the_earliest_accepted_event_time():
    assert _rejected_field(occurred_at=946_684_799_999) == "occurred_at"
    earliest = dataclasses.replace(VALID, occurred_at=946_684_800_000)
    assert validate(earliest, CHANNELS) == earliest
