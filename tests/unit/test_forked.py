"""Shares of a job in forked processes: results in order, failures with their reason."""

from __future__ import annotations

import os
import time

import pytest

from pipeline.forked import ForkedShareFailed, map_forked


def test_each_share_runs_in_its_own_process_and_results_come_back_in_share_order():
    results = map_forked(lambda share: (share, os.getpid()), 3)
    assert [share for share, _ in results] == [0, 1, 2]
    pids = [pid for _, pid in results]
    assert pids[0] == os.getpid()
    assert len(set(pids)) == 3


def test_one_share_runs_here_without_forking():
    assert map_forked(lambda share: os.getpid(), 1) == [os.getpid()]


def test_a_child_sees_the_parents_data_as_it_was_at_the_fork():
    data = list(range(100_000))
    results = map_forked(lambda share: sum(data[share::2]), 2)
    assert results == [sum(data[0::2]), sum(data[1::2])]


def test_an_exception_in_a_child_comes_back_with_its_traceback():
    def work(share: int) -> int:
        if share == 1:
            raise ValueError("partition 3 has a bad event")
        return share

    with pytest.raises(ForkedShareFailed) as failure:
        map_forked(work, 2)
    message = str(failure.value)
    assert "share 1" in message
    assert "ValueError: partition 3 has a bad event" in message
    assert "Traceback" in message


def test_a_child_that_dies_without_an_answer_is_reported_with_its_exit_status():
    def work(share: int) -> int:
        if share == 1:
            os._exit(3)
        return share

    with pytest.raises(ForkedShareFailed, match="died without an answer: exit status 3"):
        map_forked(work, 2)


def test_when_this_processs_share_fails_the_children_are_killed(tmp_path):
    pid_file = tmp_path / "child.pid"

    def work(share: int) -> int:
        if share == 1:
            pid_file.write_text(str(os.getpid()))
            time.sleep(60)
            return share
        while not pid_file.exists():
            time.sleep(0.01)
        raise RuntimeError("the parent's share failed")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the parent's share failed"):
        map_forked(work, 2)
    assert time.monotonic() - started < 30
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # killed and reaped: no such process


def test_shares_must_be_at_least_one():
    with pytest.raises(ValueError, match="at least 1"):
        map_forked(lambda share: share, 0)
