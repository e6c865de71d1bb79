"""A live worker with the default settings emits breaches on quiet partitions within
a second of their deadline, and retracts a breach whose reply was in flight.

The latency benchmark's measurement (``pipeline.tools.bench_latency.measure_latency``)
on the test broker, without simulator load: every partition is quiet, so only
the worker's wall-clock tick fires what is due, and the latency is the skew plus
up to one tick plus the send. The defaults (no skew, a 0.5 s tick) keep it under
1 s; a reply dated before its deadline and sent after it retracts the breach
(docs/benchmarks.md, "Breach latency").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings_loader import build_settings
from pipeline.tools.bench_latency import measure_latency

pytestmark = [pytest.mark.integration]


def test_probe_breaches_on_quiet_partitions_are_readable_within_a_second_by_default(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    report = measure_latency(build_settings(), kafka_bootstrap, tmp_path, events=0, seconds=5)
    # A probe every 0.5 s for 5 s, plus the warm-up probe; each warns, then breaches.
    assert report.probes == 11
    assert report.probe_breaches == 11
    assert len(report.probe_latencies) == 22
    assert max(report.probe_latencies) <= 1.0, sorted(report.probe_latencies)
    # Probe 10 got a reply dated 0.1 s before its deadline, sent after it: its
    # breach (not its warning, which the reply came after) is retracted.
    assert (report.late_replies, report.probe_retractions, report.retractable) == (1, 1, 0)
