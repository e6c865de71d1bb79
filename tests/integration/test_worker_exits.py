"""A worker is either working or gone: a failed part ends the whole process, non-zero.

The real ``cxstream worker`` runs against the real broker; its stream-core child
process is killed with SIGKILL (what the kernel's OOM killer does), and the
worker must exit with a non-zero code within seconds, so that an orchestrator
restarts it, instead of staying up with ``/healthz`` 200 and consuming nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.simulator import SimulatorConfig, generate
from tests.integration.worker_harness import (
    WorkerProcess,
    free_port,
    send_items,
    settings_with_topics,
    wait_until_worker_consumed,
    write_config,
)

#: How long a worker may take from the child's death to its own exit.
EXIT_WITHIN_SECONDS = 20.0


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(child) for child in text)
    return children


def core_child_pid(worker: WorkerProcess, timeout: float = 30.0) -> int:
    """The pid of the worker's ``agents.core_child`` process, once it runs."""
    assert worker.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_running()
        for pid in child_pids(worker.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if b"agents.core_child" in cmdline:
                return pid
        time.sleep(0.2)
    raise AssertionError(f"no stream core child within {timeout}s:\n{worker.log_tail()}")


def wait_for_exit(worker: WorkerProcess, timeout: float) -> int | None:
    assert worker.process is not None
    try:
        return worker.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize("traffic", ["starting", "idle", "busy"])
def test_a_worker_whose_core_child_is_killed_exits_non_zero_within_seconds(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path, traffic: str
) -> None:
    config = {
        "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
        "worker": {"clock": "stream", "batch_size": 200, "session_update_seconds": 0.2},
    }
    settings = settings_with_topics(config)
    config_file = write_config(tmp_path / "cxstream.yaml", config)
    items = list(generate(SimulatorConfig(customers=50, count=600, seed=3)))
    if traffic == "starting":
        send_items(items, settings)  # a backlog: the child dies during the first batches
    worker = WorkerProcess("worker", config_file, tmp_path / "worker.log", free_port()).start()
    try:
        if traffic != "starting":
            send_items(items[:300], settings)
            wait_until_worker_consumed(settings, worker, timeout=120.0)
        child = core_child_pid(worker)
        if traffic == "busy":
            send_items(items[300:], settings)
        killed_at = time.monotonic()
        os.kill(child, signal.SIGKILL)

        code = wait_for_exit(worker, EXIT_WITHIN_SECONDS)
        took = time.monotonic() - killed_at
        print(f"exit_code={code} exit_seconds={took:.1f}")

        assert code is not None, (
            f"the worker still runs {EXIT_WITHIN_SECONDS:.0f}s after its core child was "
            f"killed:\n{worker.log_tail()}"
        )
        assert code != 0, worker.log_tail()
        assert took <= EXIT_WITHIN_SECONDS
    finally:
        worker.stop()
