"""The settings object: unknown keys, wrong types and bad overrides are errors that name them."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.settings_loader import build_settings, load_settings


def test_a_misspelled_key_is_an_error_that_names_it_and_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError) as raised:
        build_settings({"kafka": {"bootstrp": "127.0.0.1:1"}})
    assert "kafka.bootstrp" in str(raised.value)
    assert "did you mean 'bootstrap'" in str(raised.value)


def test_an_unknown_section_is_an_error_that_names_it() -> None:
    with pytest.raises(ConfigError, match="unknown section 'workr'"):
        build_settings({"workr": {"clock": "live"}})


def test_a_misspelled_key_in_a_rule_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"session\.gap_minute\b.*gap_minutes"):
        build_settings({"session": {"gap_minute": 10}})


def test_a_value_of_the_wrong_type_names_its_key_and_the_type_wanted() -> None:
    with pytest.raises(ConfigError) as raised:
        build_settings({"kafka": {"input_partitions": "six"}})
    assert str(raised.value) == "kafka.input_partitions must be an integer, not 'six'"


def test_a_bool_setting_refuses_a_string() -> None:
    with pytest.raises(ConfigError, match=r"worker\.control_records must be true or false"):
        build_settings({"worker": {"control_records": "yes please"}})


def test_a_number_setting_takes_an_integer_where_it_wants_a_float() -> None:
    assert build_settings({"worker": {"tick_seconds": 1}}).worker.tick_seconds == 1.0


def test_an_environment_override_of_the_wrong_type_names_the_variable() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"CXSTREAM_KAFKA_INPUT_PARTITIONS": "six"})
    message = str(raised.value)
    assert "CXSTREAM_KAFKA_INPUT_PARTITIONS" in message
    assert "must be an integer" in message


def test_an_environment_override_that_does_not_parse_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CXSTREAM_KAFKA_BOOTSTRAP"):
        load_settings(environ={"CXSTREAM_KAFKA_BOOTSTRAP": "[127.0.0.1"})


def test_an_environment_override_of_the_right_type_applies() -> None:
    settings = load_settings(environ={"CXSTREAM_KAFKA_INPUT_PARTITIONS": "3"})
    assert settings.kafka.input_partitions == 3


def test_sasl_without_a_user_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.sasl_username is needed with SASL_SSL"):
        build_settings({"kafka": {"security_protocol": "SASL_SSL", "sasl_password": "x"}})


def test_an_unknown_security_protocol_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.security_protocol must be one of"):
        build_settings({"kafka": {"security_protocol": "TLS"}})


def test_limits_read_durations_and_sizes() -> None:
    limits = build_settings({"limits": {"max_future_skew": "90s", "max_record_bytes": 500_000}})
    assert (limits.limits.max_future_skew_seconds, limits.limits.max_record_bytes) == (
        90.0,
        500_000,
    )


def test_the_defaults_lock_down_what_a_bank_network_must_not_see_open() -> None:
    worker = build_settings().worker
    assert (worker.web_bind, worker.control_records) == ("127.0.0.1", False)
