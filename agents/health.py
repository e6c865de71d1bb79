"""Is the worker making progress? The decision behind ``/healthz``, as plain Python.

A worker that holds partitions with records waiting (lag) but has not advanced
any of its positions for ``stuck_seconds`` is stuck: ``/healthz`` answers 503
with the reason, so an orchestrator restarts it. A worker with no lag is
healthy however long it has been idle, and so is one that holds no partitions.

No faust, no kafka here: the roles feed :meth:`ProgressWatch.observe` with
their positions and the partitions' log ends (``agents/worker.py``), and the
tests drive it with a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Health:
    """One verdict: healthy or not, why, and the lag per partition it saw."""

    healthy: bool
    reason: str
    lag: dict[str, int] = field(default_factory=dict)
    #: Seconds since a position last advanced while there was lag (0 when none).
    stalled_seconds: float = 0.0
    #: The partitions held and their positions (None: nothing applied yet).
    positions: dict[str, int | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "stuck",
            "reason": self.reason,
            "lag": self.lag,
            "stalled_seconds": round(self.stalled_seconds, 1),
            "positions": self.positions,
        }


class ProgressWatch:
    """Remembers positions between observations and when one last moved.

    A *position* is the offset of the next record a partition's consumer will
    apply (``None``: nothing applied yet); *end* is the partition's log end
    (``None``: not known yet, counted as no lag). Lag is ``end - position``.
    The clock is monotonic seconds; tests pass their own.
    """

    def __init__(self, stuck_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stuck_seconds = stuck_seconds
        self._clock = clock
        self._positions: dict[Hashable, int | None] = {}
        #: Since when there has been lag and no position moved (None: no such stretch).
        self._quiet_since: float | None = None

    def observe(
        self, positions: Mapping[Hashable, int | None], ends: Mapping[Hashable, int | None]
    ) -> Health:
        """Take one reading of the held partitions and return the verdict."""
        now = self._clock()
        advanced = any(
            _moved(self._positions.get(key), position) for key, position in positions.items()
        )
        self._positions = dict(positions)
        lag = {
            str(key): end - (positions.get(key) or 0)
            for key, end in ends.items()
            if key in positions and end is not None and end - (positions.get(key) or 0) > 0
        }
        held = {str(key): position for key, position in positions.items()}
        if not positions:
            self._quiet_since = None
            return Health(True, "holds no partitions")
        if not lag:
            self._quiet_since = None
            return Health(True, "no lag", positions=held)
        if advanced or self._quiet_since is None:
            self._quiet_since = now
        stalled = now - self._quiet_since
        if stalled >= self.stuck_seconds:
            return Health(
                False,
                f"{len(lag)} partition(s) have lag and no position advanced for "
                f"{stalled:.0f}s (limit {self.stuck_seconds:g}s)",
                lag,
                stalled,
                held,
            )
        return Health(True, "processing", lag, stalled, held)


def _moved(before: int | None, after: int | None) -> bool:
    return after is not None and (before is None or after > before)
