"""Process-wide runtime tuning shared by every cxstream command."""

from __future__ import annotations

import gc

#: CPython's defaults (700, 10, 10) run a young-generation collection every 700
#: container allocations. The stream core allocates a few records and event
#: objects per event, almost all freed by reference counting (the core builds no
#: reference cycles), so most of those collections find nothing while walking
#: every young object; and every tenth of a tenth walks the whole heap of
#: long-lived customer state. Collecting less often cut the replay's time by
#: 10-17% (docs/benchmarks.md); the price is that cyclic garbage, which is rare
#: here, lives a little longer.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Apply :data:`GC_THRESHOLDS` to this process."""
    gc.set_threshold(*GC_THRESHOLDS)
