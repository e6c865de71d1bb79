"""Process-wide runtime tuning."""

from __future__ import annotations

import gc
import time

import mode

from agents.app import build_app
from agents.crash_exit import exit_when_crashed
from pipeline.cli import main
from pipeline.runtime.tuning import GC_THRESHOLDS
from pipeline.settings_loader import build_settings


def test_every_cxstream_command_collects_young_objects_less_often_than_cpython_does() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert main(["schema", "check"]) == 0
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 700
    finally:
        gc.set_threshold(*before)


# -- a crashed worker ends its process (agents/crash_exit.py) -----------------


class FakeService:
    """Just what the watchdog reads: ``crash_reason``."""

    def __init__(self) -> None:
        self.crash_reason: BaseException | None = None


def test_the_watchdog_ends_the_process_with_code_1_a_grace_period_after_a_crash() -> None:
    service = FakeService()
    exits: list[tuple[int, float]] = []
    started = time.monotonic()
    thread = exit_when_crashed(
        service,
        grace_seconds=0.3,
        poll_seconds=0.01,
        exit=lambda code: exits.append((code, time.monotonic() - started)),
    )
    time.sleep(0.2)
    assert exits == []  # nothing crashed yet: the watchdog only watches
    crashed_at = time.monotonic() - started
    service.crash_reason = RuntimeError("the stream core process exited with code -9")
    thread.join(timeout=5)

    assert not thread.is_alive()
    assert [code for code, _ in exits] == [1]
    assert 0.3 <= exits[0][1] - crashed_at < 1.0


def test_the_watchdog_does_nothing_while_the_worker_has_not_crashed() -> None:
    exits: list[int] = []
    thread = exit_when_crashed(
        FakeService(), grace_seconds=0.0, poll_seconds=0.01, exit=exits.append
    )
    thread.join(timeout=0.3)
    assert thread.is_alive()
    assert thread.daemon is True
    assert exits == []


def test_agents_run_under_a_supervisor_that_crashes_the_worker_instead_of_restarting() -> None:
    app = build_app(build_settings({}), role="process", web_enabled=False)
    assert app.conf.agent_supervisor is mode.CrashingSupervisor
