"""A crashed worker ends its process: non-zero, within seconds, always.

Why this exists: in faust-streaming 0.15 a crash does not reliably end the
process.

* An exception in an agent goes to the agent's supervisor; Faust's default
  (``mode.OneForOneSupervisor``) restarts the agent instead of stopping the
  worker. Ours then waits for a stream core that is gone, and the worker stays
  up, ``/healthz`` 200, consuming nothing (reproduced here by killing the core
  child during the first batches; robinhood/faust#301 for the same with
  ``CrashingSupervisor``, faust-streaming/faust#324 for a worker that stays in
  "Stopping" for good).
* Any other crash (a task, a timer, the flusher through ``app.crash``) marks
  the root service crashed, and mode's ``Worker`` then stops every service
  and re-raises the reason, which exits with code 1; but a service whose
  ``stop`` waits on something that never comes keeps the process alive.

So the agents run under :class:`mode.CrashingSupervisor` (the app's
``agent_supervisor``: a crash goes up to the worker instead of restarting the
agent), and :func:`exit_when_crashed` starts a watchdog thread: once the
worker's ``crash_reason`` is set, the process has ``grace_seconds`` to stop on
its own (exit code 1 from mode); after that the thread ends it with
``os._exit(EXIT_CODE)``. A thread, not a task: it must work while the event
loop is blocked or already closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Exit code of a worker ended by the watchdog (mode's own crash exit is 1 too).
EXIT_CODE = 1
#: Time a crashed worker gets to stop cleanly before the watchdog ends it.
GRACE_SECONDS = 10.0
#: How often the watchdog looks at the worker.
POLL_SECONDS = 0.25


class Crashable(Protocol):
    """What the watchdog reads: mode's ``Service.crash_reason``."""

    @property
    def crash_reason(self) -> BaseException | None: ...


def exit_when_crashed(
    service: Crashable,
    *,
    grace_seconds: float = GRACE_SECONDS,
    poll_seconds: float = POLL_SECONDS,
    exit: Callable[[int], Any] = os._exit,
    clock: Callable[[], float] = time.monotonic,
) -> threading.Thread:
    """Start a daemon thread that ends the process ``grace_seconds`` after ``service`` crashed.

    Returns the thread (it runs until it calls ``exit``; tests pass their own
    ``exit`` and join it).
    """

    def watch() -> None:
        while service.crash_reason is None:
            time.sleep(poll_seconds)
        reason = service.crash_reason
        deadline = clock() + grace_seconds
        log.critical(
            "the worker crashed (%r); it exits within %.0fs, by force if it must",
            reason,
            grace_seconds,
        )
        while clock() < deadline:
            time.sleep(poll_seconds)
        log.critical("the crashed worker did not stop within %.0fs: exiting now", grace_seconds)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # closed: nothing to save
                stream.flush()
        exit(EXIT_CODE)

    thread = threading.Thread(target=watch, name="cxstream-crash-exit", daemon=True)
    thread.start()
    return thread
