import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.event import InteractionEvent
from pipeline.contract.validate import validate
from pipeline.errors import ValidationError
from pipeline.settings_loader import build_settings

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


# -- control characters, lengths and attribute maps ------------------------------------

ID_AND_LABEL_FIELDS = (
    "event_id",
    "customer_id",
    "contact_id",
    "producer",
    "agent_id",
    "channel",
    "topic",
)


def _message(event: InteractionEvent, **kwargs) -> str:
    with pytest.raises(ValidationError) as caught:
        validate(event, CHANNELS, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize("field", ID_AND_LABEL_FIELDS)
@pytest.mark.parametrize(
    ("char", "described"),
    [
        ("\x00", "control character U+0000"),
        ("\t", "control character U+0009"),
        ("\n", "control character U+000A"),
        ("\x1f", "control character U+001F"),
        ("\x7f", "control character U+007F"),
        ("\x85", "control character U+0085"),
        ("\x9f", "control character U+009F"),
        ("\ud800", "lone surrogate U+D800"),
    ],
)
def test_a_control_character_in_an_id_or_label_is_refused_naming_it(field, char, described):
    value = "chat" if field == "channel" else "abc"
    event = dataclasses.replace(VALID, **{field: value[:2] + char + value[2:]})
    assert _message(event) == (
        f"{field}: {described} at position 2; ids and labels must not contain control characters"
    )


def test_printable_unicode_in_ids_and_labels_is_accepted():
    event = dataclasses.replace(
        VALID, customer_id="asiakas-äö-😀", topic="kortti kadonnut", agent_id="agent\u00a07"
    )
    assert validate(event, CHANNELS) is event


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("event_id", 200),
        ("customer_id", 200),
        ("contact_id", 200),
        ("producer", 200),
        ("agent_id", 200),
        ("topic", 100),
    ],
)
def test_an_id_or_label_at_its_length_limit_is_accepted_and_one_more_is_refused(field, limit):
    at_limit = dataclasses.replace(VALID, **{field: "x" * limit})
    assert validate(at_limit, CHANNELS) is at_limit
    over = dataclasses.replace(VALID, **{field: "x" * (limit + 1)})
    assert _message(over) == f"{field}: {limit + 1} characters, over the limit of {limit}"


def test_a_channel_longer_than_a_label_is_refused_before_the_registry_lookup():
    assert _message(dataclasses.replace(VALID, channel="c" * 101)) == (
        "channel: 101 characters, over the limit of 100"
    )


def test_attribute_values_may_hold_tab_newline_and_carriage_return():
    event = dataclasses.replace(VALID, attributes={"note": "line 1\r\n\tline 2"})
    assert validate(event, CHANNELS) is event


@pytest.mark.parametrize(
    ("char", "described"),
    [
        ("\x00", "control character U+0000"),
        ("\x0b", "control character U+000B"),
        ("\x1b", "control character U+001B"),
        ("\x7f", "control character U+007F"),
        ("\x85", "control character U+0085"),
        ("\udfff", "lone surrogate U+DFFF"),
    ],
)
def test_other_control_characters_in_an_attribute_value_are_refused(char, described):
    event = dataclasses.replace(VALID, attributes={"queue": "cards", "note": f"a{char}b"})
    assert _message(event) == (
        f"attributes: value of 'note' has {described} at position 1; "
        "only tab, newline and carriage return are allowed"
    )


def test_a_control_character_in_an_attribute_key_is_refused():
    event = dataclasses.replace(VALID, attributes={"no\nte": "x"})
    assert _message(event) == (
        "attributes: key 'no\\nte' has control character U+000A at position 2; "
        "keys must not contain control characters"
    )


def test_fifty_attributes_are_accepted_and_fifty_one_refused():
    fifty = {f"k{n}": "v" for n in range(50)}
    assert validate(dataclasses.replace(VALID, attributes=fifty), CHANNELS).attributes == fifty
    over = dataclasses.replace(VALID, attributes={**fifty, "k50": "v"})
    assert _message(over) == "attributes: 51 entries, over the limit of 50"


def test_an_attribute_value_over_one_kib_is_refused_naming_the_key():
    at_limit = dataclasses.replace(VALID, attributes={"note": "x" * 1024})
    assert validate(at_limit, CHANNELS) is at_limit
    over = dataclasses.replace(VALID, attributes={"note": "x" * 1025})
    assert _message(over) == (
        "attributes: value of 'note' is 1025 characters, over the limit of 1024"
    )


def test_an_attribute_key_over_the_label_limit_is_refused():
    over = dataclasses.replace(VALID, attributes={"k" * 101: "x"})
    assert _message(over) == (
        f"attributes: key '{'k' * 20}...' is 101 characters, over the limit of 100"
    )


def test_attributes_over_eight_kib_in_total_are_refused():
    # Eight values of 1,000 characters with keys k0..k7 total 8,016: within 8,192.
    eight = {f"k{n}": "x" * 1000 for n in range(8)}
    assert validate(dataclasses.replace(VALID, attributes=eight), CHANNELS).attributes == eight
    nine = {**eight, "k8": "x" * 200}
    assert _message(dataclasses.replace(VALID, attributes=nine)) == (
        "attributes: keys and values total 8218 characters, over the limit of 8192"
    )


def test_an_attribute_that_is_not_a_string_is_refused():
    event = dataclasses.replace(VALID, attributes={"count": 3})  # type: ignore[dict-item]
    assert _message(event) == "attributes: value of 'count' must be a string, not int"


# -- the future-skew rule ---------------------------------------------------------

NOW_MS = 1_772_439_300_000  # 2026-03-02T08:15:00Z, VALID's own time
SKEW_MS = 300_000


def test_an_event_up_to_the_skew_ahead_of_the_wall_clock_is_accepted():
    event = dataclasses.replace(VALID, occurred_at=NOW_MS + SKEW_MS)
    assert validate(event, CHANNELS, now_ms=NOW_MS, max_future_ms=SKEW_MS) is event


def test_an_event_further_ahead_than_the_skew_is_refused_saying_how_far_and_the_limit():
    event = dataclasses.replace(VALID, occurred_at=NOW_MS + SKEW_MS + 1)
    with pytest.raises(ValidationError) as caught:
        validate(event, CHANNELS, now_ms=NOW_MS, max_future_ms=SKEW_MS)
    assert caught.value.field == "occurred_at"
    assert str(caught.value) == (
        "occurred_at: 2026-03-02T08:20:00.001+00:00 is 300.001 s ahead of the wall clock, "
        "over limits.max_future_skew (300 s); is the producer's clock set right?"
    )


def test_an_event_dated_2099_12_31_is_refused_when_the_wall_clock_is_given():
    event = dataclasses.replace(VALID, occurred_at=4_102_358_400_000)  # 2099-12-31T00:00Z
    assert validate(event, CHANNELS) is event  # inside the 2000..2099 sanity bounds
    assert _message(event, now_ms=NOW_MS, max_future_ms=SKEW_MS).startswith(
        "occurred_at: 2099-12-31T00:00:00.000+00:00 is 2329919100 s ahead of the wall clock"
    )


def test_the_sanity_bounds_still_apply_with_the_wall_clock_given():
    event = dataclasses.replace(VALID, occurred_at=946_684_799_999)
    assert _message(event, now_ms=NOW_MS, max_future_ms=SKEW_MS).startswith(
        "occurred_at: 946684799999 ms is outside the years 2000..2099"
    )


def test_past_events_are_never_refused_by_the_skew_rule():
    event = dataclasses.replace(VALID, occurred_at=NOW_MS - 365 * 24 * 3_600_000)
    assert validate(event, CHANNELS, now_ms=NOW_MS, max_future_ms=SKEW_MS) is event


_ID_ALPHABET = st.sampled_from(
    ["a", "Z", "7", "-", " ", "\u00a0", "ä", "😀", "\x00", "\t", "\x7f", "\x85"]
)


@settings(max_examples=300, deadline=None)
@given(
    customer_id=st.text(_ID_ALPHABET, min_size=0, max_size=210),
    topic=st.none() | st.text(_ID_ALPHABET, max_size=110),
)
def test_the_fast_path_accepts_exactly_what_the_field_rules_accept(customer_id, topic):
    """Whichever path validate() takes, the verdict follows the written rules."""
    forbidden = set("\x00\t\x7f\x85")
    expected_ok = (
        bool(customer_id.strip())
        and len(customer_id) <= 200
        and not forbidden & set(customer_id)
        and (topic is None or (len(topic) <= 100 and not forbidden & set(topic)))
    )
    event = dataclasses.replace(VALID, customer_id=customer_id, topic=topic)
    try:
        validate(event, CHANNELS)
    except ValidationError as exc:
        assert not expected_ok, str(exc)
        assert exc.field in ("customer_id", "topic")
    else:
        assert expected_ok
