"""The simulate command: outputs, pacing, progress and the Kafka seam (with a fake)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.contract.event import InteractionEvent, iso_to_ms
from pipeline.errors import ConfigError, DeliveryError
from pipeline.settings import KafkaSettings
from pipeline.settings_loader import build_settings
from pipeline.tools.simulate_cli import (
    EVENTS_PER_JOURNEY,
    Pacer,
    TimeLapse,
    parse_start,
    simulate_command,
)
from pipeline.tools.simulator import (
    BANK_EVENTS_PER_JOURNEY,
    SimulatorConfig,
    bank_profile,
    generate,
)


class FakeClock:
    """A monotonic clock that only moves when someone sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeProducer:
    """Stands in for ``EventProducer``: records what was sent."""

    def __init__(
        self, kafka: KafkaSettings, topic: str, channels: Any, *, fail_flush: bool = False
    ):
        self.bootstrap = kafka.bootstrap
        self.topic = topic
        self.channels = channels
        self.fail_flush = fail_flush
        self.events: list[InteractionEvent] = []
        self.raw: list[tuple[bytes | None, bytes]] = []
        self.closed = False

    def send(self, event: InteractionEvent) -> None:
        self.events.append(event)

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        self.raw.append((key, value))

    def flush(self) -> None:
        if self.fail_flush:
            raise DeliveryError("broker said no")

    def close(self) -> None:
        self.closed = True


def run(**overrides: Any) -> int:
    arguments: dict[str, Any] = {
        "settings": build_settings(),
        "customers": 100,
        "count": 500,
        "seed": 7,
        "start": None,
        "rate": None,
        "output": None,
        "to_kafka": False,
        "bootstrap": None,
        "progress_every_s": 0,
        "stderr": io.StringIO(),
        # The tests below compare with SimulatorConfig's own traffic.
        "profile": SimulatorConfig,
        "events_per_journey": EVENTS_PER_JOURNEY,
    }
    arguments.update(overrides)
    return simulate_command(**arguments)


def test_output_file_holds_one_json_line_per_item_in_schema_key_order(tmp_path: Path) -> None:
    target = tmp_path / "out" / "traffic.jsonl"
    assert run(output=target, count=2000) == 0
    lines = target.read_text(encoding="utf-8").splitlines()
    expected = [
        item.to_json_line() for item in generate(SimulatorConfig(customers=100, count=2000, seed=7))
    ]
    assert lines == expected
    first = json.loads(lines[0])
    assert list(first) == list(
        next(iter(generate(SimulatorConfig(count=1, seed=7)))).event.to_json_dict()
    )


def test_kafka_path_sends_events_and_malformed_bytes_through_the_producer() -> None:
    made: list[FakeProducer] = []

    def factory(*args: Any) -> FakeProducer:
        made.append(FakeProducer(*args))
        return made[0]

    assert run(to_kafka=True, bootstrap="broker:1", producer_factory=factory, count=3000) == 0
    producer = made[0]
    items = list(generate(SimulatorConfig(customers=100, count=3000, seed=7)))
    assert (producer.bootstrap, producer.topic) == ("broker:1", "cx.interactions")
    assert producer.events == [item.event for item in items if item.event is not None]
    assert producer.raw == [(None, item.malformed_bytes) for item in items if item.is_malformed]
    assert producer.closed


def test_a_failed_flush_makes_the_command_fail_and_is_counted() -> None:
    stderr = io.StringIO()
    factory = lambda *args: FakeProducer(*args, fail_flush=True)  # noqa: E731
    assert run(to_kafka=True, producer_factory=factory, stderr=stderr) == 1
    assert "errors=1" in stderr.getvalue().splitlines()[-1]


def test_progress_lines_and_final_summary_go_to_stderr(tmp_path: Path) -> None:
    clock = FakeClock()
    stderr = io.StringIO()
    code = run(
        output=tmp_path / "t.jsonl",
        count=50,
        rate=10.0,
        progress_every_s=2.0,
        clock=clock,
        sleep=clock.sleep,
        stderr=stderr,
    )
    lines = stderr.getvalue().splitlines()
    assert code == 0
    assert re.fullmatch(
        r"simulate sent=\d+ rate=10/s malformed=\d+ errors=0 elapsed=\d+\.\ds", lines[0]
    )
    assert len(lines) == 2 + 1  # every 2 s of a 4.9 s run, then the summary
    assert lines[-1].startswith("simulate done sent=50 rate=10/s malformed=")


def test_pacer_holds_the_rate_without_drift() -> None:
    clock = FakeClock()
    pacer = Pacer(250.0, clock=clock, sleep=clock.sleep)
    for _ in range(1001):
        pacer.wait()
        clock.now += 0.0001  # each send costs a little time; it must not accumulate
    assert clock.now - 100.0 == pytest.approx(4.0 + 0.0001, abs=1e-6)


def test_pacer_catches_up_at_most_one_burst_after_a_stall() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, clock=clock, sleep=clock.sleep, burst_seconds=1.0)
    pacer.wait()
    clock.now += 10.0  # a ten-second stall (e.g. the broker was slow)
    for _ in range(101):  # the item due now plus one second's worth
        pacer.wait()
    assert clock.slept == []
    pacer.wait()
    assert len(clock.slept) == 1


def test_start_now_uses_the_wall_clock_and_iso_is_parsed() -> None:
    assert parse_start("now", wall_ms=lambda: 1_800_000_000_123) == 1_800_000_000_123
    assert parse_start("2026-03-02T08:00:00+02:00", wall_ms=lambda: 0) == iso_to_ms(
        "2026-03-02T06:00:00+00:00"
    )
    assert parse_start(None, wall_ms=lambda: 0) is None


def test_start_without_offset_is_refused() -> None:
    with pytest.raises(ConfigError, match="offset"):
        parse_start("2026-03-02T08:00:00", wall_ms=lambda: 0)


def test_live_run_never_sends_an_event_before_it_happened(tmp_path: Path) -> None:
    clock = FakeClock()
    wall = {"ms": iso_to_ms("2026-03-03T10:00:00+02:00")}

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        wall["ms"] += int(seconds * 1000)

    sent_at: list[tuple[int, int]] = []

    class RecordingProducer(FakeProducer):
        def send(self, event: InteractionEvent) -> None:
            sent_at.append((event.occurred_at, wall["ms"]))

    code = run(
        start="now",
        rate=20.0,
        count=300,
        to_kafka=True,
        producer_factory=RecordingProducer,
        clock=clock,
        sleep=sleep,
        wall_ms=lambda: wall["ms"],
    )
    assert code == 0
    assert all(occurred <= wall_ms for occurred, wall_ms in sent_at)
    # Event time tracks the wall clock: the newest event is never far behind it.
    assert wall["ms"] - max(occurred for occurred, _ in sent_at) < 60_000


# -- the time-lapse under the future-skew rule (issue 12) -------------------------------

MINUTE_MS = 60_000


def test_a_time_lapse_starts_in_the_past_and_meets_the_wall_clock_when_it_ends():
    lapse = TimeLapse(wall_start_ms=10_000_000_000, speedup=30.0, lapse_ms=10 * MINUTE_MS)
    assert lapse.event_start_ms == 10_000_000_000 - 29 * 10 * MINUTE_MS
    assert lapse.caught_up_ms == 10_000_000_000 + 10 * MINUTE_MS
    # 30 minutes of event time pass in one wall minute ...
    assert lapse.due_ms(lapse.event_start_ms + 30 * MINUTE_MS) == 10_000_000_000 + MINUTE_MS
    # ... until event time has caught up; from then on it is the wall clock.
    assert lapse.due_ms(lapse.caught_up_ms) == lapse.caught_up_ms
    assert lapse.due_ms(lapse.caught_up_ms + 5 * MINUTE_MS) == lapse.caught_up_ms + 5 * MINUTE_MS


def test_without_a_speedup_event_time_is_the_wall_clock():
    lapse = TimeLapse(wall_start_ms=10_000_000_000, speedup=1.0, lapse_ms=10 * MINUTE_MS)
    assert lapse.event_start_ms == lapse.caught_up_ms == 10_000_000_000
    assert lapse.due_ms(10_000_060_000) == 10_000_060_000


def test_no_event_of_the_time_lapse_is_ever_due_before_it_happened():
    lapse = TimeLapse(wall_start_ms=10_000_000_000, speedup=30.0, lapse_ms=10 * MINUTE_MS)
    for at in range(lapse.event_start_ms, lapse.caught_up_ms + 20 * MINUTE_MS, 7_777):
        assert at <= lapse.due_ms(at)


def test_the_demo_time_lapse_never_sends_an_event_ahead_of_the_wall_clock() -> None:
    """The demo's own simulate command line, run for its default time-lapse plus 2 minutes."""
    from pipeline.cli import build_parser
    from pipeline.tools.demo import (
        DEFAULT_CUSTOMERS,
        DEFAULT_LAPSE_SECONDS,
        DEFAULT_RATE,
        DEFAULT_SPEEDUP,
        simulate_arguments,
    )

    argv = simulate_arguments(
        ["--bootstrap", "broker:1"],
        rate=DEFAULT_RATE,
        customers=DEFAULT_CUSTOMERS,
        seed=7,
        speedup=DEFAULT_SPEEDUP,
        lapse_seconds=DEFAULT_LAPSE_SECONDS,
    )
    args = build_parser().parse_args(argv)
    clock = FakeClock()
    wall_start = iso_to_ms("2026-03-04T14:00:00+02:00")
    wall = {"ms": wall_start}

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        wall["ms"] += round(seconds * 1000)

    sent_at: list[tuple[int, int]] = []

    class RecordingProducer(FakeProducer):
        def send(self, event: InteractionEvent) -> None:
            sent_at.append((event.occurred_at, wall["ms"]))

    code = run(
        start=args.start,
        rate=args.rate,
        customers=args.customers,
        seed=args.seed,
        speedup=args.speedup,
        lapse_seconds=args.lapse,
        count=round(DEFAULT_RATE * (DEFAULT_LAPSE_SECONDS + 120)),
        # What `cxstream simulate` (and so the demo) runs.
        profile=bank_profile,
        events_per_journey=BANK_EVENTS_PER_JOURNEY,
        to_kafka=True,
        producer_factory=RecordingProducer,
        clock=clock,
        sleep=sleep,
        wall_ms=lambda: wall["ms"],
    )
    assert code == 0
    skew_ms = build_settings().limits.max_future_skew_seconds * 1000
    worst_ahead = max(occurred - sent for occurred, sent in sent_at)
    assert worst_ahead <= 0 < skew_ms
    # Event time started (speedup - 1) x the time-lapse in the past (give or take the
    # first arrival) and ran the lapse at the speedup ...
    lapse_start = wall_start - (DEFAULT_SPEEDUP - 1) * DEFAULT_LAPSE_SECONDS * 1000
    assert 0 <= sent_at[0][0] - lapse_start < 5 * MINUTE_MS
    # ... and once the lapse is over it follows the wall clock.
    assert wall["ms"] > wall_start + DEFAULT_LAPSE_SECONDS * 1000
    assert wall["ms"] - max(occurred for occurred, _ in sent_at) < MINUTE_MS


def test_the_demo_worker_runs_on_event_time_during_a_time_lapse():
    from pipeline.tools.demo import worker_clock

    assert worker_clock(30.0) == "stream"
    assert worker_clock(1.0) == "live"


def test_the_command_line_lapse_default_is_the_simulators():
    from pipeline.cli import build_parser
    from pipeline.tools.simulate_cli import DEFAULT_LAPSE_SECONDS

    parser = build_parser()
    assert parser.parse_args(["simulate"]).lapse == DEFAULT_LAPSE_SECONDS
    assert parser.parse_args(["demo"]).lapse == DEFAULT_LAPSE_SECONDS


def test_the_simulate_command_line_generates_the_bank_profile(tmp_path: Path) -> None:
    from pipeline.cli import main

    target = tmp_path / "traffic.jsonl"
    assert main(["simulate", "--count", "300", "--output", str(target)]) == 0
    expected = [item.to_json_line() for item in generate(bank_profile(count=300, seed=7))]
    assert target.read_text(encoding="utf-8").splitlines() == expected


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_simulate_shows_a_bar_and_still_ends_with_its_summary(
    tmp_path: Path,
) -> None:
    stderr = _Terminal()
    assert run(output=tmp_path / "t.jsonl", count=300, progress_every_s=2.0, stderr=stderr) == 0
    shown = stderr.getvalue()
    assert "300/300" in shown and "100%" in shown
    assert "simulate done sent=300 " in shown.splitlines()[-1]
