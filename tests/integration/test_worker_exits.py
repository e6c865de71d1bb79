"""A worker is either working or gone: a failed part ends the whole process, non-zero.

The real ``cxstream worker`` runs against the real broker. Its batch loop's
writes fail for good when another worker takes over its transactional id (a
worker started twice by mistake, exactly once): the first worker's producer is
fenced. It must then exit with a non-zero code within seconds, so that an
orchestrator sees it, instead of staying up with ``/healthz`` 200 and consuming
nothing; and the second worker finishes the input exactly.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from pipeline.control import send_end_of_input
from pipeline.replay import replay_events
from pipeline.tools.simulator import SimulatorConfig, generate
from tests.integration.worker_harness import (
    WorkerProcess,
    describe_difference,
    final_by_key,
    free_port,
    input_end,
    input_topic,
    normalise,
    process_group,
    read_outputs,
    send_items,
    settings_with_topics,
    wait_for_members,
    wait_until_worker_consumed,
    write_config,
)

#: How long a fenced worker may take to exit once the other one is up.
EXIT_WITHIN_SECONDS = 30.0


def wait_for_exit(worker: WorkerProcess, timeout: float) -> int | None:
    assert worker.process is not None
    try:
        return worker.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def test_a_worker_whose_transactional_id_is_taken_over_exits_non_zero_and_nothing_is_lost(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    config = {
        "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
        "worker": {
            "clock": "stream",
            "batch_size": 100,
            "session_update_seconds": 0.2,
            "guarantee": "exactly_once",
            # Both workers get the same id, as a worker started twice would.
            "transactional_id": f"{unique_prefix}-worker",
            # The input is ended with an end-of-input record, as the replay ends it.
            "control_records": True,
        },
    }
    settings = settings_with_topics(config)
    config_file = write_config(tmp_path / "cxstream.yaml", config)
    items = list(generate(SimulatorConfig(customers=50, count=1500, seed=3)))
    first = WorkerProcess("worker", config_file, tmp_path / "first.log", free_port()).start()
    second = WorkerProcess("worker", config_file, tmp_path / "second.log", free_port())
    try:
        send_items(items[:500], settings)
        wait_until_worker_consumed(settings, first, timeout=120.0)

        second.start()
        # The second worker's producer takes the transactional id before its
        # consumer joins the group: once both are members, the first is fenced.
        wait_for_members(settings.kafka.bootstrap, process_group(settings), 2, second)
        started_at = time.monotonic()
        send_items(items[500:], settings)  # the first worker tries to write, fenced
        code = wait_for_exit(first, EXIT_WITHIN_SECONDS)
        took = time.monotonic() - started_at
        print(f"exit_code={code} exit_seconds={took:.1f}")

        assert code is not None, (
            f"the fenced worker still runs {EXIT_WITHIN_SECONDS:.0f}s after the second one "
            f"started:\n{first.log_tail()}"
        )
        assert code != 0, first.log_tail()
        send_end_of_input(settings.kafka, input_topic(settings), input_end_ms=input_end(items))
        wait_until_worker_consumed(settings, second, timeout=120.0)
        events = [item.event for item in items if item.event is not None]
        expected = final_by_key(normalise(replay_events(events, settings).records))
        actual = final_by_key(read_outputs(settings.kafka.bootstrap, settings))
        assert actual == expected, describe_difference(actual, expected)
    finally:
        first.stop()
        second.stop()
