"""The offline replay: routing, end of input, collapse and the file round trip."""

import json

from pipeline.contract.event import AGENT_REPLY, CONTACT_ENDED, CONTACT_STARTED
from pipeline.contract.jsonform import write_events
from pipeline.core.partitioning import partition_for
from pipeline.replay import collapse, replay_events, replay_file
from pipeline.settings import build_settings
from tests.unit.core_standins import HOUR, MINUTE, T0, ev


def _events():
    return [
        ev(T0, customer="anna", contact="a1", channel="chat", type=CONTACT_STARTED),
        ev(T0 + MINUTE, customer="anna", contact="a1", channel="chat", topic="cards"),
        ev(T0 + 2 * MINUTE, customer="ben", contact="b1", channel="phone", type=CONTACT_STARTED),
        ev(
            T0 + 3 * MINUTE,
            customer="anna",
            contact="a1",
            channel="chat",
            type=CONTACT_ENDED,
            actor="system",
            outcome="unresolved",
        ),
        ev(
            T0 + 4 * MINUTE,
            customer="ben",
            contact="b1",
            channel="phone",
            type=AGENT_REPLY,
            actor="agent",
        ),
        ev(T0 + HOUR, customer="anna", contact="a2", channel="phone", type=CONTACT_STARTED),
        ev(
            T0 + HOUR + 5 * MINUTE,
            customer="anna",
            contact="a2",
            channel="phone",
            type=CONTACT_ENDED,
            actor="system",
            outcome="resolved",
        ),
    ]


def test_replay_closes_every_session_and_finds_the_switch_failure():
    result = replay_events(_events(), build_settings(), partitions=3)
    collapsed = collapse(result.records)
    sessions = sorted(
        (s["customer_id"], s["status"], s["channel_path"]) for s in collapsed["session"].values()
    )
    assert sessions == [
        ("anna", "final", ["chat"]),
        ("anna", "final", ["phone"]),
        ("ben", "final", ["phone"]),
    ]
    assert list(collapsed["journey_signal"]) == ["a1>a2:switch_failure"]
    assert sorted(result.stats) == sorted({partition_for(c, 3) for c in ("anna", "ben")})
    assert result.totals().events == 7


def test_collapse_keeps_the_last_record_per_natural_key():
    result = replay_events(_events(), build_settings(), partitions=1)
    contacts = collapse(result.records)["contact"]
    assert {k: (v["ended_at"], v["outcome"]) for k, v in contacts.items()} == {
        "a1": (T0 + 3 * MINUTE, "unresolved"),
        "b1": (None, None),
        "a2": (T0 + HOUR + 5 * MINUTE, "resolved"),
    }


def test_replay_file_writes_outputs_and_rejects_bad_lines(tmp_path, capsys):
    source = tmp_path / "events.jsonl"
    write_events(source, _events())
    with source.open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")
        bad = ev(T0, customer="cara", channel="carrier_pigeon").to_json_dict()
        handle.write(json.dumps(bad) + "\n")
    out = tmp_path / "out"
    result = replay_file(source, build_settings(), out)

    assert result.rejected == 2
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["stage"]) for r in rejected] == [(8, "decode"), (9, "validate")]
    sessions = (out / "sessions.jsonl").read_text().splitlines()
    assert len(sessions) == 3
    signals = [
        json.loads(line) for line in (out / "journey_signals.jsonl").read_text().splitlines()
    ]
    assert [s["signal_id"] for s in signals] == ["a1>a2:switch_failure"]
    assert (out / "late_events.jsonl").read_text() == ""
    assert "replay events=7 rejected=2" in capsys.readouterr().out
