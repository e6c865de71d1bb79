import hashlib

import pipeline
from pipeline.dlq import (
    DeadLetter,
    build_dead_letter,
    build_unsent_dead_letter,
    dead_letter_key,
    parse_dead_letter_headers,
    record_size,
)
from pipeline.errors import DecodeError, UnknownSchemaError, ValidationError

NOW_MS = 1_772_439_300_000  # 2026-03-02T08:15:00Z


def test_decode_failure_keeps_the_record_and_names_the_reason():
    error = UnknownSchemaError("interaction_event: unknown schema fingerprint 0102030405060708")
    letter = build_dead_letter(
        source_topic="cx.interactions",
        partition=3,
        offset=41,
        key=b"cust-1",
        value=b"\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08\x00",
        timestamp_ms=1_772_439_000_000,
        error=error,
        now_ms=NOW_MS,
    )
    assert letter == DeadLetter(
        key=b"cx.interactions/3/41",
        value=b"\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08\x00",
        timestamp_ms=1_772_439_000_000,
        headers=[
            ("cx.dlq.source.topic", b"cx.interactions"),
            ("cx.dlq.source.partition", b"3"),
            ("cx.dlq.source.offset", b"41"),
            ("cx.dlq.source.key", b"cust-1"),
            ("cx.dlq.stage", b"decode"),
            ("cx.dlq.error.class", b"UnknownSchemaError"),
            (
                "cx.dlq.error.message",
                b"interaction_event: unknown schema fingerprint 0102030405060708",
            ),
            ("cx.dlq.processor.version", pipeline.__version__.encode()),
            ("cx.dlq.time", b"2026-03-02T08:15:00.000+00:00"),
        ],
    )


def test_validation_failure_carries_stage_and_field():
    letter = build_dead_letter(
        source_topic="cx.interactions",
        partition=0,
        offset=7,
        key=None,
        value=b"...",
        timestamp_ms=None,
        error=ValidationError("score: 11 is outside 0..10", field="score"),
        now_ms=NOW_MS,
    )
    headers = parse_dead_letter_headers(letter.headers)
    assert (headers["cx.dlq.stage"], headers["cx.dlq.error.field"]) == ("validate", "score")
    assert headers["cx.dlq.error.message"] == "score: 11 is outside 0..10"


def test_explicit_stage_wins_and_plain_errors_default_to_process():
    common = dict(source_topic="t", partition=0, offset=0, key=None, value=None, timestamp_ms=None)
    plain = build_dead_letter(**common, error=RuntimeError("boom"), now_ms=NOW_MS)
    staged = build_dead_letter(**common, error=RuntimeError("x"), stage="sessionize", now_ms=0)
    assert parse_dead_letter_headers(plain.headers)["cx.dlq.stage"] == "process"
    assert parse_dead_letter_headers(staged.headers)["cx.dlq.stage"] == "sessionize"


def test_long_error_message_is_cut_to_2000_characters():
    letter = build_dead_letter(
        source_topic="t",
        partition=0,
        offset=0,
        key=None,
        value=None,
        timestamp_ms=None,
        error=ValueError("x" * 5000),
        now_ms=NOW_MS,
    )
    assert len(parse_dead_letter_headers(letter.headers)["cx.dlq.error.message"]) == 2000


def test_parse_keeps_only_dead_letter_headers_and_decodes_utf8():
    headers = [("traceparent", b"00-abc"), ("cx.dlq.error.message", "ä ei".encode())]
    assert parse_dead_letter_headers(headers) == {"cx.dlq.error.message": "ä ei"}


def test_the_dead_letter_key_names_the_source_record_and_a_null_key_leaves_no_header() -> None:
    letter = build_dead_letter(
        source_topic="cx.interactions",
        partition=0,
        offset=7,
        key=None,
        value=b"...",
        timestamp_ms=None,
        error=DecodeError("nope"),
        now_ms=NOW_MS,
    )
    assert dead_letter_key("cx.interactions", 0, 7) == b"cx.interactions/0/7"
    assert letter.key == b"cx.interactions/0/7"
    assert "cx.dlq.source.key" not in parse_dead_letter_headers(letter.headers)


def test_an_oversized_record_is_cut_to_fit_with_its_digest_and_size_in_headers() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB
    letter = build_dead_letter(
        source_topic="cx.interactions",
        partition=2,
        offset=99,
        key=b"cust-1",
        value=value,
        timestamp_ms=None,
        error=DecodeError("interaction_event: not Avro single-object encoded"),
        now_ms=NOW_MS,
        max_bytes=900_000,
    )
    headers = parse_dead_letter_headers(letter.headers)
    assert record_size(letter.key, letter.value, letter.headers) <= 900_000
    assert record_size(letter.key, letter.value, letter.headers) > 899_000
    assert letter.value is not None and value.startswith(letter.value)
    assert headers["cx.dlq.truncated"] == "value"
    assert headers["cx.dlq.value.sha256"] == hashlib.sha256(value).hexdigest()
    assert headers["cx.dlq.value.bytes"] == "1048576"
    assert (headers["cx.dlq.stage"], headers["cx.dlq.source.offset"]) == ("decode", "99")
    assert headers["cx.dlq.source.key"] == "cust-1"


def test_a_record_that_fits_is_kept_whole_without_a_truncation_header() -> None:
    letter = build_dead_letter(
        source_topic="t",
        partition=0,
        offset=0,
        key=b"k",
        value=b"v" * 1000,
        timestamp_ms=None,
        error=DecodeError("x"),
        now_ms=NOW_MS,
        max_bytes=10_000,
    )
    assert letter.value == b"v" * 1000
    assert "cx.dlq.truncated" not in parse_dead_letter_headers(letter.headers)


def test_a_huge_source_key_is_cut_too_when_the_value_alone_cannot_make_room() -> None:
    letter = build_dead_letter(
        source_topic="t",
        partition=0,
        offset=3,
        key=b"k" * 50_000,
        value=b"v" * 50_000,
        timestamp_ms=None,
        error=DecodeError("x"),
        now_ms=NOW_MS,
        max_bytes=20_000,
    )
    headers = parse_dead_letter_headers(letter.headers)
    assert record_size(letter.key, letter.value, letter.headers) <= 20_000
    assert letter.value == b""
    assert headers["cx.dlq.truncated"] == "value,source.key"
    assert headers["cx.dlq.source.key"].startswith("kkk")


def test_a_record_that_could_not_be_sent_leaves_a_headers_only_dead_letter() -> None:
    letter = build_unsent_dead_letter(
        topic="cx.sessions",
        partition=4,
        key=b"s-1",
        value=b"x" * 2_000_000,
        error=RuntimeError("[Error 10] MessageSizeTooLargeError"),
        stage="send",
        now_ms=NOW_MS,
    )
    headers = parse_dead_letter_headers(letter.headers)
    digest = hashlib.sha256(b"x" * 2_000_000).hexdigest()
    assert letter.value is None
    assert letter.key is not None and letter.key.startswith(b"cx.sessions/4/sha256:")
    assert (headers["cx.dlq.target.topic"], headers["cx.dlq.target.partition"]) == (
        "cx.sessions",
        "4",
    )
    assert (headers["cx.dlq.stage"], headers["cx.dlq.error.class"]) == ("send", "RuntimeError")
    assert (headers["cx.dlq.value.sha256"], headers["cx.dlq.value.bytes"]) == (digest, "2000000")
    assert headers["cx.dlq.truncated"] == "value"
    assert headers["cx.dlq.source.key"] == "s-1"
    again = build_unsent_dead_letter(
        topic="cx.sessions",
        partition=4,
        key=b"s-1",
        value=b"x" * 2_000_000,
        error=RuntimeError("other"),
        stage="send",
        now_ms=0,
    )
    assert again.key == letter.key  # a re-send collapses by key
