import pipeline
from pipeline.dlq import DeadLetter, build_dead_letter, parse_dead_letter_headers
from pipeline.errors import UnknownSchemaError, ValidationError

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
        key=b"cust-1",
        value=b"\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08\x00",
        timestamp_ms=1_772_439_000_000,
        headers=[
            ("cx.dlq.source.topic", b"cx.interactions"),
            ("cx.dlq.source.partition", b"3"),
            ("cx.dlq.source.offset", b"41"),
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
