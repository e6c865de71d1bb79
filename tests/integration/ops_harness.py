"""Helpers of the ops-page and Prometheus-alerting tests: a real worker, its web pages,
simulator traffic that breaches SLAs, and the figures ``/metrics`` shows."""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.settings import Settings
from pipeline.tools.simulator import SimItem, SimulatorConfig, generate
from tests.integration.worker_harness import (
    WorkerProcess,
    free_port,
    settings_with_topics,
    write_config,
)

# Monday 17:00 Helsinki, a quiet evening rate: web messages sent in the evening are
# answered next morning, so most of them breach the 2 h target (about 68 of 80), and
# chat and phone breach a few. 11 h of event time in 1500 items.
BREACHING_TRAFFIC = SimulatorConfig(
    customers=300,
    count=1500,
    seed=7,
    start_ms=int(datetime(2026, 3, 2, 15, 0, tzinfo=UTC).timestamp() * 1000),
    arrival_rate_per_hour=100.0,
)


def required_binary(path: str, hint: str) -> str:
    """``path`` if it is an executable; else skip on a laptop, fail under CI."""
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    found = shutil.which(Path(path).name)
    if found:
        return found
    message = f"{path} not found: {hint}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def breaching_items() -> list[SimItem]:
    return list(generate(BREACHING_TRAFFIC))


def stream_settings(bootstrap: str, prefix: str) -> tuple[Settings, dict]:
    """Stream-clock settings (event time drives SLA clocks) and their config dict."""
    config = {
        "kafka": {"bootstrap": bootstrap, "topic_prefix": prefix},
        "worker": {"clock": "stream", "batch_size": 200, "session_update_seconds": 0.2},
    }
    return settings_with_topics(config), config


@contextmanager
def running_worker(tmp_path: Path, config: dict, timeout: float = 60.0) -> Iterator[WorkerProcess]:
    """A ``cxstream worker`` process whose web server answers; stopped on exit."""
    config_file = write_config(tmp_path / "cxstream.yaml", config)
    worker = WorkerProcess("worker", config_file, tmp_path / "worker.log", free_port()).start()
    try:
        wait_for_page(worker, "/healthz", timeout)
        yield worker
    finally:
        worker.stop()


def base_url(worker: WorkerProcess) -> str:
    return f"http://127.0.0.1:{worker.web_port}"


def fetch(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_for_page(worker: WorkerProcess, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        worker.assert_running()
        try:
            fetch(base_url(worker) + path, timeout=2.0)
            return
        except (urllib.error.URLError, OSError) as exc:
            error = exc
        time.sleep(0.3)
    raise AssertionError(f"{path} did not answer in {timeout}s ({error}):\n{worker.log_tail()}")


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in a Prometheus text exposition."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def ops_figures_from_metrics(text: str, channels: Iterable[str]) -> dict[str, float]:
    """What the ops page must show, computed independently from ``/metrics`` text.

    Keys are ``metric`` for the header and ``metric@channel`` for the cards, the
    same naming as the page's ``data-metric``/``data-channel`` attributes. Switch
    failures "in the last hour" equal the total here: the worker is minutes old.
    """
    samples = metric_samples(text)

    def total(name: str, **match: str) -> float:
        return sum(
            value
            for sample_name, labels, value in samples
            if sample_name == name and all(labels.get(k) == v for k, v in match.items())
        )

    figures = {
        "events_consumed": total("cxstream_events_consumed_total"),
        "open_sessions": total("cxstream_open_sessions"),
        "dead_letters": total("cxstream_dead_letters_total"),
        "consumer_lag": total("cxstream_consumer_lag"),
    }
    for channel in channels:
        # The page shows warnings and breaches net of their retractions (docs/ops.md).
        figures[f"sla_breaches@{channel}"] = total(
            "cxstream_sla_breaches_total", channel=channel
        ) - total("cxstream_sla_retractions_total", channel=channel, kind="breach")
        figures[f"sla_warnings@{channel}"] = total(
            "cxstream_sla_warnings_total", channel=channel
        ) - total("cxstream_sla_retractions_total", channel=channel, kind="warning")
        figures[f"oldest_unanswered_seconds@{channel}"] = total(
            "cxstream_oldest_unanswered_seconds", channel=channel
        )
        figures[f"oldest_unanswered_ratio@{channel}"] = total(
            "cxstream_sla_oldest_unanswered_deadline_ratio", channel=channel
        )
        figures[f"switch_failures_last_hour@{channel}"] = total(
            "cxstream_channel_switch_failures_total", from_channel=channel
        )
    return figures


def wait_until_metrics_settle(
    worker: WorkerProcess, timeout: float = 30.0, quiet_seconds: float = 3.0
) -> str:
    """``/metrics`` text once it stopped changing for ``quiet_seconds`` (gauges tick at 1 s)."""
    deadline = time.monotonic() + timeout
    url = base_url(worker) + "/metrics"
    last = fetch(url)
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        worker.assert_running()
        current = fetch(url)
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return current.decode()
    raise AssertionError(f"/metrics kept changing for {timeout}s:\n{worker.log_tail()}")
