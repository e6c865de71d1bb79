"""The /healthz decision: stuck means lag and no position advanced for stuck_seconds."""

from __future__ import annotations

from agents.health import ProgressWatch


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_watch(stuck_seconds: float = 60.0) -> tuple[ProgressWatch, FakeClock]:
    clock = FakeClock()
    return ProgressWatch(stuck_seconds, clock=clock), clock


def test_a_worker_with_lag_whose_positions_do_not_move_for_stuck_seconds_is_unhealthy() -> None:
    watch, clock = make_watch(60.0)
    assert watch.observe({0: 10, 1: 5}, {0: 20, 1: 5}).healthy is True
    clock.now += 59.0
    assert watch.observe({0: 10, 1: 5}, {0: 20, 1: 5}).healthy is True
    clock.now += 1.0
    health = watch.observe({0: 10, 1: 5}, {0: 20, 1: 5})

    assert health.healthy is False
    assert health.lag == {"0": 10}
    assert health.stalled_seconds == 60.0
    assert health.as_json() == {
        "status": "stuck",
        "reason": "1 partition(s) have lag and no position advanced for 60s (limit 60s)",
        "lag": {"0": 10},
        "stalled_seconds": 60.0,
        "positions": {"0": 10, "1": 5},
    }


def test_a_position_that_advances_keeps_a_lagging_worker_healthy() -> None:
    watch, clock = make_watch(60.0)
    for position in range(10, 20):
        clock.now += 30.0
        health = watch.observe({0: position}, {0: 1000})
        assert health.healthy is True
        assert health.reason == "processing"
    clock.now += 59.0
    assert watch.observe({0: 19}, {0: 1000}).healthy is True
    clock.now += 1.0
    assert watch.observe({0: 19}, {0: 1000}).healthy is False


def test_an_idle_worker_without_lag_stays_healthy_however_long_nothing_moves() -> None:
    watch, clock = make_watch(60.0)
    for _ in range(10):
        clock.now += 3600.0
        health = watch.observe({0: 20, 1: 7}, {0: 20, 1: 7})
        assert (health.healthy, health.reason, health.lag) == (True, "no lag", {})


def test_a_worker_holding_no_partitions_is_healthy() -> None:
    watch, clock = make_watch(1.0)
    clock.now += 100.0
    assert watch.observe({}, {}).reason == "holds no partitions"
    assert watch.observe({}, {}).healthy is True


def test_lag_that_appears_after_an_idle_hour_counts_from_when_it_was_first_seen() -> None:
    watch, clock = make_watch(60.0)
    watch.observe({0: 20}, {0: 20})
    clock.now += 3600.0
    assert watch.observe({0: 20}, {0: 25}).healthy is True
    clock.now += 59.0
    assert watch.observe({0: 20}, {0: 25}).healthy is True
    clock.now += 1.0
    assert watch.observe({0: 20}, {0: 25}).healthy is False


def test_a_partition_without_a_position_lags_by_its_whole_log_and_recovers_once_one_appears() -> (
    None
):
    watch, clock = make_watch(10.0)
    watch.observe({3: None}, {3: 40})
    clock.now += 10.0
    stuck = watch.observe({3: None}, {3: 40})
    assert (stuck.healthy, stuck.lag) == (False, {"3": 40})
    clock.now += 1.0
    moving = watch.observe({3: 5}, {3: 40})
    assert (moving.healthy, moving.lag) == (True, {"3": 35})


def test_an_unknown_log_end_counts_as_no_lag() -> None:
    watch, clock = make_watch(1.0)
    watch.observe({0: 3}, {0: None})
    clock.now += 5.0
    assert watch.observe({0: 3}, {0: None}).reason == "no lag"


def test_a_stuck_worker_becomes_healthy_again_when_a_position_moves() -> None:
    watch, clock = make_watch(5.0)
    watch.observe({0: 1}, {0: 9})
    clock.now += 5.0
    assert watch.observe({0: 1}, {0: 9}).healthy is False
    clock.now += 1.0
    assert watch.observe({0: 2}, {0: 9}).healthy is True
