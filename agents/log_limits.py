"""Rate-limited logging for the Kafka client libraries.

During a 95 s broker outage aiokafka and Faust logged the same connection
errors many times a second (50 MB of identical lines). :class:`RepeatFilter`
lets the first record of each message template through, then at most one per
``period_seconds``, and that one says how many were suppressed in between. A
record is "the same" when logger, level and the unformatted message template
agree (``record.msg``, before its arguments are filled in), so a changing
host name or retry count does not defeat the limit.

:func:`install_repeat_filter` puts one filter on the handlers of the root
logger, where ``faust``, ``mode``, ``aiokafka`` and ``kafka`` records end up;
records of other loggers pass untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

#: Loggers (and their children) whose repeated records are limited.
LIMITED_LOGGERS = ("aiokafka", "kafka", "faust", "mode")
#: At most one record of a template per this many seconds, after the first.
PERIOD_SECONDS = 30.0


class RepeatFilter(logging.Filter):
    """Pass the first record of a template, then one per period with a suppressed count."""

    def __init__(
        self,
        prefixes: Iterable[str] = LIMITED_LOGGERS,
        period_seconds: float = PERIOD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)
        self.period_seconds = period_seconds
        self._clock = clock
        #: template key -> (time the last record was let through, suppressed since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def _limited(self, name: str) -> bool:
        return any(name == prefix or name.startswith(prefix + ".") for prefix in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._limited(record.name):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = (now, 0)
            return True
        passed_at, suppressed = seen
        if now - passed_at < self.period_seconds:
            self._seen[key] = (passed_at, suppressed + 1)
            return False
        self._seen[key] = (now, 0)
        if suppressed:
            # Formatted here so every handler prints the note; args are consumed.
            record.msg = f"{record.getMessage()} ({suppressed} similar messages suppressed)"
            record.args = None
        return True


def install_repeat_filter(
    logger: logging.Logger | None = None, period_seconds: float = PERIOD_SECONDS
) -> RepeatFilter:
    """Add one :class:`RepeatFilter` to every handler of ``logger`` (the root by default).

    On the handlers, not the loggers: a logger's own filters do not see records
    propagated from its children (``aiokafka.conn`` to ``aiokafka``).
    """
    target = logger if logger is not None else logging.getLogger()
    repeat = RepeatFilter(period_seconds=period_seconds)
    for handler in target.handlers:
        handler.addFilter(repeat)
    return repeat
