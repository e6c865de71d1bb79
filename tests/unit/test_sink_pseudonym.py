from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import SqlSettings
from pipeline.sink.pseudonym import Pseudonymizer


def test_pseudonym_is_a_prefixed_32_char_hmac_and_stable() -> None:
    pseudonymizer = Pseudonymizer(b"k")
    first = pseudonymizer.customer("cust-1")
    assert (first[:2], len(first)) == ("p-", 34)
    assert Pseudonymizer(b"k").customer("cust-1") == first
    assert Pseudonymizer(b"other").customer("cust-1") != first


def test_from_settings_is_none_when_pseudonymise_is_off() -> None:
    assert Pseudonymizer.from_settings(SqlSettings(pseudonymise=False)) is None


def test_from_settings_reads_the_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"k\n")
    pseudonymizer = Pseudonymizer.from_settings(
        SqlSettings(pseudonymise=True, pseudonym_key_file=str(key_file))
    )
    assert pseudonymizer is not None
    assert pseudonymizer.customer("cust-1") == Pseudonymizer(b"k").customer("cust-1")


@pytest.mark.parametrize("content", [None, b""])
def test_missing_or_empty_key_file_is_a_config_error(tmp_path: Path, content: bytes | None) -> None:
    key_file = tmp_path / "key"
    if content is not None:
        key_file.write_bytes(content)
    settings = SqlSettings(pseudonymise=True, pseudonym_key_file=str(key_file))
    with pytest.raises(ConfigError, match="pseudonym_key_file"):
        Pseudonymizer.from_settings(settings)
