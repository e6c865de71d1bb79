"""Repeated Kafka-client log lines are rate-limited with a count of what was suppressed."""

from __future__ import annotations

import io
import logging

from agents.log_limits import RepeatFilter, install_repeat_filter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_the_first_record_of_a_template_passes_then_one_per_period_with_the_suppressed_count() -> (
    None
):
    clock = FakeClock()
    limit = RepeatFilter(period_seconds=30.0, clock=clock)
    template = "Unable connect to node with id %s: %s"
    passed = []
    for second in range(95):  # a 95 s outage, ten errors a second
        clock.now = float(second)
        for attempt in range(10):
            rec = record("aiokafka.conn", template, 1, f"attempt {attempt}")
            if limit.filter(rec):
                passed.append((second, rec.getMessage()))

    assert passed == [
        (0, "Unable connect to node with id 1: attempt 0"),
        (30, "Unable connect to node with id 1: attempt 0 (299 similar messages suppressed)"),
        (60, "Unable connect to node with id 1: attempt 0 (299 similar messages suppressed)"),
        (90, "Unable connect to node with id 1: attempt 0 (299 similar messages suppressed)"),
    ]


def test_different_templates_levels_and_loggers_are_limited_separately() -> None:
    limit = RepeatFilter(period_seconds=30.0, clock=FakeClock())
    first = [
        record("aiokafka.conn", "a %s", 1),
        record("aiokafka.conn", "b %s", 1),
        record("aiokafka.conn", "a %s", 1, level=logging.WARNING),
        record("faust.transport", "a %s", 1),
    ]
    assert [limit.filter(r) for r in first] == [True, True, True, True]
    assert [limit.filter(r) for r in first] == [False, False, False, False]


def test_records_of_other_loggers_are_never_limited() -> None:
    limit = RepeatFilter(period_seconds=30.0, clock=FakeClock())
    results = [limit.filter(record("agents.process", "partition %s stalled", 3)) for _ in range(5)]
    results += [limit.filter(record("kafkaesque", "x")) for _ in range(2)]
    assert results == [True] * 7


def test_kafka_python_and_mode_loggers_and_their_children_are_limited() -> None:
    limit = RepeatFilter(period_seconds=30.0, clock=FakeClock())
    for name in ("kafka", "kafka.conn", "mode.services", "faust", "aiokafka"):
        assert [limit.filter(record(name, "same")) for _ in range(3)] == [True, False, False]


def test_the_installed_filter_limits_what_a_root_handler_writes() -> None:
    root = logging.Logger("test-root")
    out = io.StringIO()
    root.addHandler(logging.StreamHandler(out))
    install_repeat_filter(root)
    child = logging.Logger("aiokafka.conn")
    child.parent = root
    for _ in range(50):
        child.error("Connect attempt to %s returned error", "broker:9092")

    assert out.getvalue() == "Connect attempt to broker:9092 returned error\n"
