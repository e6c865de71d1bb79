"""A real Prometheus scraping a real worker raises the shipped SLA breach alert.

Prometheus (Debian's binary) scrapes the worker's ``/metrics`` every second and
evaluates the shipped rule files every second. The recording rules are loaded as
shipped; the alert rules are a temporary copy in which only each alert's ``for:``
is shortened to 1 s (the shipped 10 minutes would outlast any test) -- the
expressions are the shipped ones. Simulator traffic in which most evening web
messages breach their 2 h target is produced in slices a few seconds apart, so the
counters grow across several scrapes and ``rate()`` sees the breaches.

Without the ``prometheus`` binary the test skips on a laptop and fails under CI
(``CI`` set).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.ops_harness import (
    breaching_items,
    fetch,
    required_binary,
    running_worker,
    stream_settings,
)
from tests.integration.worker_harness import WorkerProcess, free_port, send_items

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules"
TEST_FOR = "1s"


def shortened_alert_rules(source: Path, target: Path) -> Path:
    """Copy an alert rule file with every ``for:`` set to ``TEST_FOR``, nothing else changed."""
    text, replaced = re.subn(
        r"^(\s+)for: \S+$", rf"\g<1>for: {TEST_FOR}", source.read_text(), flags=re.M
    )
    assert replaced > 0, f"no for: clause in {source}"
    target.write_text(text)
    # The edit must not have touched anything but the durations.
    shipped, copied = yaml.safe_load(source.read_text()), yaml.safe_load(text)
    for group, copy in zip(shipped["groups"], copied["groups"], strict=True):
        for rule, rule_copy in zip(group["rules"], copy["rules"], strict=True):
            assert {**rule, "for": TEST_FOR} == rule_copy
    return target


class Prometheus:
    """A ``prometheus`` server on a free local port with its data in a temp folder."""

    def __init__(self, binary: str, workdir: Path, worker: WorkerProcess) -> None:
        self.port = free_port()
        self.log_file = workdir / "prometheus.log"
        alerts = shortened_alert_rules(
            RULES / "cxstream-alerts.yml", workdir / "cxstream-alerts.yml"
        )
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES / "cxstream-recording.yml"), str(alerts)],
            "scrape_configs": [
                {
                    "job_name": "cxstream-worker",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [f"127.0.0.1:{worker.web_port}"]}],
                }
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.command = [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def api(self, path: str) -> dict:
        body = json.loads(fetch(f"http://127.0.0.1:{self.port}/api/v1/{path}"))
        assert body["status"] == "success", body
        return body["data"]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_file.read_text(errors="replace")[-chars:]

    def wait(self, what: str, check, timeout: float, worker: WorkerProcess):
        """Poll ``check()`` until it returns something truthy; fail with both logs."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log_tail()}")
            worker.assert_running()
            try:
                result = check()
                if result:
                    return result
            except OSError as exc:  # not listening yet
                last_error = exc
            time.sleep(0.5)
        try:
            alerts = [(a["labels"], a["state"], a["value"]) for a in self.api("alerts")["alerts"]]
        except OSError as exc:
            alerts = [f"cannot list alerts: {exc}"]
        raise AssertionError(
            f"{what} within {timeout}s (last error: {last_error})\nalerts: {alerts}\n"
            f"--- prometheus log ---\n{self.log_tail()}\n--- worker log ---\n{worker.log_tail()}"
        )


@pytest.fixture
def prometheus_binary() -> str:
    return required_binary("/usr/bin/prometheus", "install Debian's prometheus package")


@pytest.fixture
def prometheus_factory(tmp_path: Path, prometheus_binary: str) -> Iterator:
    started: list[Prometheus] = []

    def start(worker: WorkerProcess) -> Prometheus:
        workdir = tmp_path / "prometheus"
        workdir.mkdir()
        server = Prometheus(prometheus_binary, workdir, worker).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def scraped_ok(prometheus: Prometheus) -> bool:
    targets = prometheus.api("targets")["activeTargets"]
    return any(t["health"] == "up" for t in targets)


def breach_alert(prometheus: Prometheus, channel: str) -> dict | None:
    """The channel's pending or firing ``SLABreachRateHigh``, if Prometheus has one."""
    for alert in prometheus.api("alerts")["alerts"]:
        labels = alert["labels"]
        if (
            labels["alertname"] == "SLABreachRateHigh"
            and labels.get("channel") == channel
            and alert["state"] in ("pending", "firing")
        ):
            return alert
    return None


def test_sla_breaches_raise_the_shipped_breach_alert_for_web_messages(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path, prometheus_factory
) -> None:
    settings, config = stream_settings(kafka_bootstrap, unique_prefix)
    items = breaching_items()

    with running_worker(tmp_path, config) as worker:
        prometheus = prometheus_factory(worker)
        prometheus.wait(
            "prometheus did not scrape the worker", lambda: scraped_ok(prometheus), 30, worker
        )
        assert breach_alert(prometheus, "web_message") is None

        # Slices a scrape or two apart: a counter that jumps from nothing to its
        # final value between two scrapes shows no increase to rate().
        for start in range(0, len(items), 250):
            send_items(items[start : start + 250], settings)
            time.sleep(1.5)

        # Chat and phone breach a few too and may alert first; wait for web messages.
        web = prometheus.wait(
            "SLABreachRateHigh{channel=web_message} was not pending or firing",
            lambda: breach_alert(prometheus, "web_message"),
            45,
            worker,
        )
        assert web["labels"]["severity"] == "page"
        assert web["labels"]["scope"] == "channel"
        assert web["annotations"]["runbook_url"] == "docs/ops.md#slabreachratehigh"
        # The alert's value is the breach share: most evening web messages breach.
        assert float(web["value"]) > 0.05
