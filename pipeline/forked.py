"""Run independent shares of one job on several CPU cores with ``os.fork``.

The offline replay's partitions are independent of each other, as they are in
Kafka, so a replay can run them on every core the machine gives it. Forking
(rather than spawning fresh interpreters) hands each child the parent's input
as it is in memory: nothing is serialized on the way in, only each child's
result on the way out.

This module knows nothing of the stream core; :func:`map_forked` runs share 0
in the calling process and every other share in a forked child, and returns the
results in share order.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pipeline.errors import CxstreamError

T = TypeVar("T")


class ForkedShareFailed(CxstreamError):
    """A share that ran in a forked child raised, or the child died."""


def can_fork() -> bool:
    """Whether this platform has ``os.fork`` (not on Windows)."""
    return hasattr(os, "fork")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def map_forked(work: Callable[[int], T], shares: int) -> list[T]:
    """``[work(0), ..., work(shares - 1)]``: share 0 here, the others in forked children.

    A child's result comes back pickled through a pipe. A child that raises
    sends its traceback instead, and :class:`ForkedShareFailed` carries it; so
    does a child that dies without an answer. If this process's own share
    raises, the children are killed and the error propagates.
    """
    if shares < 1:
        raise ValueError(f"shares must be at least 1, not {shares}")
    children: dict[int, tuple[int, int]] = {}  # share -> (pid, read end of its pipe)
    try:
        for share in range(1, shares):
            children[share] = _fork_child(work, share)
        results = [work(0)]
        for share in range(1, shares):
            pid, read_fd = children.pop(share)
            results.append(_collect(share, pid, read_fd))
        return results
    finally:
        for pid, read_fd in children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.close(read_fd)
            os.waitpid(pid, 0)


def _fork_child(work: Callable[[int], T], share: int) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid != 0:
        os.close(write_fd)
        return pid, read_fd
    # The child. It must never return into the caller's code (a test runner, the
    # CLI): it leaves through os._exit, which also skips the parent's atexit
    # handlers and buffered output that the fork copied.
    exit_code = 0
    try:
        os.close(read_fd)
        # The child exits right after its share: collecting cycles would only
        # cost time (the share allocates much and frees it by reference count).
        gc.disable()
        try:
            payload = pickle.dumps((True, work(share)), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:
            exit_code = 1
            payload = pickle.dumps((False, traceback.format_exc()))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
    finally:
        os._exit(exit_code)


def _collect(share: int, pid: int, read_fd: int) -> Any:
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise ForkedShareFailed(
            f"share {share} (pid {pid}) died without an answer: {_describe(status)}"
        )
    with _collector_paused():
        ok, value = pickle.loads(payload)
    if not ok:
        raise ForkedShareFailed(f"share {share} (pid {pid}) failed:\n{value}")
    return value  # what work() returned in the child


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Unpickling a share builds tens of thousands of containers at once, each
    counted towards a young-generation collection that would find no garbage."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
