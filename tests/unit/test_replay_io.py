"""The replay's fast JSON Lines input and output write what the standard library did."""

import json

import pytest

from pipeline.contract.jsonform import event_from_json, parse_json_line
from pipeline.core.records import LateEvent, NeedRecord, SessionRecord, SlaEvent
from pipeline.errors import ContractError, DecodeError
from pipeline.replay import OUTPUT_FILES, replay_file
from pipeline.replay_io import read_lines, record_line
from pipeline.settings_loader import build_settings
from pipeline.tools.bench import simulated_events
from tests.unit.core_standins import T0, ev


def _text_mode_lines(path) -> list[tuple[int, str]]:
    """How the replay read its input before: text-mode iteration, line ends stripped."""
    with path.open(encoding="utf-8") as handle:
        return [(n, raw.rstrip("\r\n")) for n, raw in enumerate(handle, start=1)]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"a\nb\n",
        b"a\nb",
        b"a\r\nb\r\n\r\nc",
        b"a\rb\r\rc\n",
        b"\n\n x \n",
        "\u00e4\u2028\x85\x0c\n\u20ac\n".encode(),
    ],
)
def test_read_lines_splits_and_numbers_lines_as_text_mode_iteration_did(tmp_path, content):
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    assert read_lines(path) == _text_mode_lines(path)


def _reference_parse(line: str):
    """parse_json_line before the orjson fast path: json.loads, then event_from_json."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc
    return event_from_json(obj)


def _outcome(parse, line: str):
    try:
        return ("event", parse(line))
    except ContractError as exc:
        return (type(exc).__name__, exc.field, str(exc))


GOOD = ev(T0, customer="anna", contact="a1", topic="cards").to_json_dict()


@pytest.mark.parametrize(
    "line",
    [
        json.dumps(GOOD),
        json.dumps({**GOOD, "attributes": {"k": "v\u00e4"}, "score": None}),
        json.dumps({**GOOD, "type": "feedback", "score": 123456789012345678901234567890}),
        json.dumps({**GOOD, "type": "feedback", "score": 7.0}),
        json.dumps({**GOOD, "type": "feedback", "score": True}),
        json.dumps({**GOOD, "handling_seconds": 12}),
        json.dumps({**GOOD, "handling_seconds": 0.00001}),
        json.dumps({**GOOD, "handling_seconds": 10**30}),
        json.dumps({**GOOD, "handling_seconds": float("nan")}),
        json.dumps({**GOOD, "handling_seconds": "12"}),
        json.dumps({**GOOD, "identifier": {"kind": "phone", "value": "+358 1"}}),
        json.dumps({**GOOD, "customer_id": None, "identifier": {"kind": "p", "value": "1"}}),
        json.dumps({**GOOD, "customer_id": None}),
        json.dumps({**GOOD, "attributes": {"k": 1}}),
        json.dumps({**GOOD, "attributes": []}),
        json.dumps({**GOOD, "producer": ""}),
        json.dumps({**GOOD, "producer": None}),
        json.dumps({**GOOD, "topic": 5}),
        json.dumps({**GOOD, "outcome": []}),
        json.dumps({**GOOD, "agent_id": {"a": "b"}}),
        json.dumps({**GOOD, "attributes": None}),
        json.dumps({**GOOD, "outcom": "resolved"}),
        json.dumps({**GOOD, "occurred_at": "yesterday"}),
        json.dumps({**GOOD, "occurred_at": "2026-03-02T08:15:00"}),
        json.dumps({**GOOD, "occurred_at": 1}),
        json.dumps({**GOOD, "event_id": 5}),
        json.dumps({k: v for k, v in GOOD.items() if k != "channel"}),
        '{"event_id": "\\ud800"}',
        json.dumps(GOOD)[:-1] + ', "event_id": "dup"}',
        "[1, 2]",
        "{not json",
        '{"a": NaN}',
    ],
)
def test_the_fast_parse_gives_the_event_or_the_error_the_standard_library_parse_gave(line):
    assert _outcome(parse_json_line, line) == _outcome(_reference_parse, line)


def _reference_line(record) -> bytes:
    text = json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def _sla(**changes) -> SlaEvent:
    values = dict(
        sla_event_id="k1:p:first_reply:0:breach",
        kind="breach",
        customer_id="c\u00e4",
        contact_id="k1",
        channel="chat",
        policy="p",
        metric="first_reply",
        clock_started_at=T0,
        deadline=T0 + 1,
        target_seconds=120.0,
        calendar="24x7",
        fired_at=T0 + 1,
        overrun_seconds=0.25,
    )
    return SlaEvent(**{**values, **changes})


@pytest.mark.parametrize(
    "record",
    [
        _sla(),
        _sla(overrun_seconds=0.00001),
        _sla(overrun_seconds=1e-7),
        _sla(overrun_seconds=float("nan")),
        _sla(target_seconds=float("inf")),
        _sla(overrun_seconds=1e16),
        _sla(overrun_seconds=-0.0),
        _sla(fired_at=2**70),
        _sla(team="tab\there \u2028 \x7f \U0001f600"),
        LateEvent(
            event_id="e1",
            customer_id="c",
            occurred_at=T0,
            clock_at=T0,
            reason="late",
            event={**GOOD, "handling_seconds": 0.00002, "attributes": {"x": "y"}},
        ),
        SessionRecord(
            session_id="s",
            customer_id="c",
            status="final",
            started_at=T0,
            ended_at=T0,
            channel_path=["chat", "phone"],
            contacts=2,
            events=3,
            channel_switches=1,
            first_contact_resolved=True,
            resolved_at_end=True,
            switch_failures=0,
            sla_breaches=0,
            nps_score=9,
            nps_average=8.5,
            feedback=[{"feedback_id": "f", "score": 9, "weight": 1e-6}],
        ),
        NeedRecord(
            need_id="n",
            customer_id="c",
            topic=None,
            status="open",
            opened_at=T0,
            last_contact_at=T0,
            closed_at=None,
            contacts=1,
            channels=["chat"],
            channel_switches=0,
            switch_failures=0,
            first_contact_resolved=None,
            resolved=False,
            customer_wait_seconds=0.0,
            handling_seconds=3.000001,
            sla_breaches=0,
            feedback_count=0,
            feedback_average=None,
            bounced=False,
            bounced_at=None,
            first_channel="chat",
        ),
    ],
)
def test_a_record_line_is_the_bytes_json_dumps_wrote(record):
    assert record_line(record) == _reference_line(record)


def test_a_replay_that_keeps_its_records_writes_the_same_files_as_one_that_does_not(tmp_path):
    from pipeline.contract.jsonform import write_events

    source = tmp_path / "events.jsonl"
    write_events(source, simulated_events(3000, seed=3))
    with source.open("a", encoding="utf-8") as handle:
        handle.write("{broken\n")
    files = {}
    for keep in (True, False):
        out = tmp_path / f"out-{keep}"
        result = replay_file(
            source, build_settings({"replay": {"workers": 2}}), out, keep_records=keep
        )
        assert bool(result.records) is keep
        files[keep] = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    assert files[True] == files[False]
    assert set(files[True]) == {*OUTPUT_FILES.values(), "rejected.jsonl"}
    assert files[True]["contacts.jsonl"].count(b"\n") > 1000


def test_merged_lines_interleave_the_shares_lines_by_their_order_value():
    from pipeline.replay_io import merged_lines

    names = {"session": "sessions.jsonl", "contact": "contacts.jsonl"}
    share_a = {"session": [(0, b"s0\n"), (5, b"s5\n")], "contact": [(0, b"c0\nc0b\n")]}
    share_b = {"session": [(2, b"s2\n"), (9, b"end-p1\n")], "contact": []}
    assert merged_lines([share_a, share_b], names) == {
        "session": [b"s0\n", b"s2\n", b"s5\n", b"end-p1\n"],
        "contact": [b"c0\nc0b\n"],
    }
