"""The offline replay: routing, end of input, collapse and the file round trip."""

import json
import os

import pytest

from pipeline.contract.event import AGENT_REPLY, CONTACT_ENDED, CONTACT_STARTED
from pipeline.contract.jsonform import write_events
from pipeline.core.partitioning import partition_for
from pipeline.errors import ConfigError
from pipeline.replay import (
    PARALLEL_MIN_EVENTS,
    ReplayShareFailed,
    collapse,
    replay_events,
    replay_file,
    replay_processes,
    usable_cores,
)
from pipeline.settings_loader import build_settings, load_settings
from pipeline.tools.bench import simulated_events
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


@pytest.fixture(scope="module")
def simulated() -> list:
    # Simulator traffic: out-of-order, late and duplicate events included.
    return simulated_events(6000, seed=5)


@pytest.mark.parametrize("processes", [2, 4])
def test_a_replay_in_several_processes_gives_the_one_process_result(simulated, processes):
    settings = build_settings()
    one_process = replay_events(simulated, settings, workers=1)
    parallel = replay_events(simulated, settings, workers=processes)
    assert len(one_process.records) > 1000
    assert [(r.OUTPUT_NAME, r.key) for r in parallel.records] == [
        (r.OUTPUT_NAME, r.key) for r in one_process.records
    ]
    assert parallel == one_process  # records, every partition's counters, held customers


def test_replay_file_runs_the_configured_processes_with_the_same_outputs(tmp_path, simulated):
    source = tmp_path / "events.jsonl"
    write_events(source, simulated)
    outputs = {}
    for processes in (1, 3):
        out = tmp_path / f"out{processes}"
        replay_file(source, build_settings({"replay": {"workers": processes}}), out)
        outputs[processes] = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    assert outputs[3] == outputs[1]
    assert len(outputs[1]["sessions.jsonl"]) > 0


def test_auto_keeps_a_small_replay_in_one_process_and_never_uses_more_than_the_partitions():
    auto = build_settings()  # replay.workers: auto
    assert auto.replay.workers == 0
    assert replay_processes(auto, PARALLEL_MIN_EVENTS - 1) == 1
    assert replay_processes(auto, PARALLEL_MIN_EVENTS) == min(usable_cores(), 6)
    eight = build_settings({"replay": {"workers": 8}})
    assert replay_processes(eight, 10) == 6  # six input partitions
    assert replay_processes(eight, 10, partitions=3) == 3
    assert replay_processes(eight, 10, requested=1) == 1


def test_replay_workers_is_read_from_the_environment():
    settings = load_settings(environ={"CXSTREAM_REPLAY_WORKERS": "2"})
    assert settings.replay.workers == 2


@pytest.mark.parametrize("bad", [-1, "many", True, 1.5])
def test_a_replay_workers_setting_that_is_not_a_count_is_refused(bad):
    with pytest.raises(ConfigError, match=r"replay\.workers must be auto or a number"):
        build_settings({"replay": {"workers": bad}})


def test_a_platform_without_fork_replays_in_one_process(monkeypatch):
    monkeypatch.setattr("pipeline.replay.can_fork", lambda: False)
    assert replay_processes(build_settings({"replay": {"workers": 4}}), 100_000) == 1


# -- a share that fails in its process stops the replay ------------------------------


def _failing_in_other_processes(monkeypatch, fail) -> None:
    """Make every share that does not hold partition 0 (so not this process's) call ``fail``.

    The pool forks after the patch, so its processes inherit it.
    """
    from pipeline import replay

    real = replay._replay_share

    def share(events, settings, count, mine):
        if mine is not None and 0 not in mine:
            fail()
        return real(events, settings, count, mine)

    monkeypatch.setattr(replay, "_replay_share", share)


def test_a_share_that_raises_in_its_process_stops_the_replay_with_its_error(monkeypatch, simulated):
    def fail():
        raise ValueError("partition 3 has a bad event")

    _failing_in_other_processes(monkeypatch, fail)
    with pytest.raises(ReplayShareFailed) as failure:
        replay_events(simulated, build_settings(), workers=2)
    assert str(failure.value) == (
        "replay share 1 failed in its process: ValueError: partition 3 has a bad event"
    )
    assert isinstance(failure.value.__cause__, ValueError)


def test_a_share_whose_process_dies_stops_the_replay(monkeypatch, simulated):
    _failing_in_other_processes(monkeypatch, lambda: os._exit(3))
    with pytest.raises(ReplayShareFailed, match="replay share 1 failed in its process: Broken"):
        replay_events(simulated, build_settings(), workers=2)


def test_a_failing_share_leaves_no_outputs_written(monkeypatch, tmp_path, simulated):
    source = tmp_path / "events.jsonl"
    write_events(source, simulated)
    _failing_in_other_processes(monkeypatch, lambda: os._exit(3))
    out = tmp_path / "out"
    with pytest.raises(ReplayShareFailed):
        replay_file(source, build_settings({"replay": {"workers": 2}}), out)
    assert sorted(path.name for path in out.iterdir()) == ["rejected.jsonl"]
    assert (out / "rejected.jsonl").read_text() == ""


# -- end of input closes the same way for any partition count (issue 13, defect 5) --------


def _customers_on_different_partitions() -> tuple[str, str]:
    """Two customers that share no partition with 3 or with 6 partitions."""
    names = [f"cust-{n}" for n in range(100)]
    first = names[0]
    for other in names[1:]:
        if all(partition_for(first, n) != partition_for(other, n) for n in (3, 6)):
            return first, other
    raise AssertionError("no two customers on different partitions")


def test_a_breach_due_before_the_last_event_of_the_input_fires_for_any_partition_count():
    waiting, later = _customers_on_different_partitions()
    events = [
        ev(T0, customer=waiting, contact="m1", channel="web_message"),
        ev(T0 + 5 * HOUR, customer=later, contact="p1", channel="phone", type=CONTACT_STARTED),
    ]
    results = {
        n: collapse(replay_events(events, build_settings(), partitions=n).records)
        for n in (1, 3, 6)
    }
    breaches = {n: sorted(r["sla_event"]) for n, r in results.items()}
    assert breaches[3] == [
        "m1:web_message_first_reply:first_reply:0:breach",
        "m1:web_message_first_reply:first_reply:0:warning",
    ]
    assert results[1] == results[3] == results[6]
    assert results[3]["contact"]["m1"]["breached"] is True


# -- the future-skew rule in the replay (issue 12) -----------------------------------


def _replay_with_one_event_at(tmp_path, at_ms: int, **kwargs):
    source = tmp_path / "events.jsonl"
    write_events(source, [*_events(), ev(at_ms, customer="dora", contact="d1")])
    out = tmp_path / "out"
    result = replay_file(source, build_settings(), out, **kwargs)
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    return result, rejected


def test_replay_refuses_an_event_further_ahead_of_its_wall_clock_than_the_skew(tmp_path):
    wall = T0 + 2 * HOUR  # the replay runs two hours after the input's first event
    result, rejected = _replay_with_one_event_at(
        tmp_path, wall + 5 * MINUTE + 1, wall_ms=lambda: wall
    )
    assert result.rejected == 1
    assert [(r["line"], r["stage"], r["field"]) for r in rejected] == [
        (8, "validate", "occurred_at")
    ]
    assert rejected[0]["reason"] == (
        "occurred_at: 2026-03-02T10:05:00.001+00:00 is 300.001 s ahead of the wall clock, "
        "over limits.max_future_skew (300 s); is the producer's clock set right?"
    )
    assert result.totals().events == 7


def test_replay_accepts_an_event_exactly_the_skew_ahead(tmp_path):
    wall = T0 + 2 * HOUR
    result, rejected = _replay_with_one_event_at(tmp_path, wall + 5 * MINUTE, wall_ms=lambda: wall)
    assert (result.rejected, rejected) == (0, [])
    assert result.totals().events == 8


def test_replay_on_the_real_clock_refuses_an_event_dated_2099_12_31(tmp_path):
    result, rejected = _replay_with_one_event_at(tmp_path, 4_102_358_400_000)
    assert [(r["line"], r["field"]) for r in rejected] == [(8, "occurred_at")]
    assert result.totals().events == 7


def test_replay_uses_the_configured_skew(tmp_path):
    source = tmp_path / "events.jsonl"
    wall = T0 + 2 * HOUR
    write_events(source, [*_events(), ev(wall + 2 * MINUTE, customer="dora", contact="d1")])
    settings = build_settings({"limits": {"max_future_skew": "1m"}})
    result = replay_file(source, settings, tmp_path / "out", wall_ms=lambda: wall)
    assert result.rejected == 1


# -- the end-to-end replay benchmark (issue 14 part 5) ---------------------------------


def test_the_end_to_end_replay_benchmark_prints_events_per_second_per_process_count(capsys):
    from pipeline.tools.bench import bench_replay_end_to_end

    rates = bench_replay_end_to_end(build_settings({"replay": {"workers": 2}}), 3000)
    lines = [line for line in capsys.readouterr().out.splitlines() if "replay end_to_end" in line]
    assert sorted(rates) == [1, 2]
    assert [line.split()[2] for line in lines] == ["processes=1", "processes=2"]
    assert all("events=3000 rejected=0 " in line for line in lines)
    assert all(rate > 0 for rate in rates.values())
