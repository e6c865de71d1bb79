"""The wall's waiting-now, fleet-wide: a real Prometheus scraping two real workers.

Two ``cxstream worker`` processes share the input topic's partitions; Prometheus
(Debian's binary, a free port, its data in a temp folder) scrapes both every
second. Customers write on chat and web messages and get no reply (their SLA
clocks run); on phone they are answered. The wall served by one worker, whose
``ops.prometheus_url`` names that Prometheus, must show per channel the sum of
both workers' ``cxstream_waiting_contacts``, which is the number of customers
waiting, in its JSON and on the page in headless Chromium (English and Finnish
labels); with Prometheus stopped it must fall back to its own worker's figure and
say so. The SQL store is an empty real SQLite schema (the wall's history figures
are tested in test_wall_page.py). Without the ``prometheus`` binary or Chromium the
test skips on a laptop and fails under CI (``CI`` set).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.contract.event import AGENT, AGENT_REPLY, CUSTOMER, CUSTOMER_MESSAGE, InteractionEvent
from pipeline.sink.store import SqlStore
from pipeline.tools.sim_delivery import SimItem
from tests.integration.ops_harness import base_url, fetch, required_binary, wait_for_page
from tests.integration.test_ops_page import browser  # noqa: F401 (a fixture)
from tests.integration.worker_harness import (
    WorkerProcess,
    free_port,
    metric_value,
    process_group,
    send_items,
    settings_with_topics,
    wait_for_members,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.prometheus, pytest.mark.browser]

WAITING = {"chat": 7, "web_message": 4}  # customers left without a reply
ANSWERED = {"phone": 3}  # customers answered: not waiting


def traffic(now_ms: int) -> list[SimItem]:
    events = []
    for channel, count in {**WAITING, **ANSWERED}.items():
        for n in range(count):
            customer = f"{channel}-customer-{n}"
            events.append(
                InteractionEvent(
                    event_id=f"{customer}-asks",
                    occurred_at=now_ms - 60_000 + n,
                    customer_id=customer,
                    channel=channel,
                    contact_id=f"{customer}-contact",
                    type=CUSTOMER_MESSAGE,
                    actor=CUSTOMER,
                )
            )
            if channel in ANSWERED:
                events.append(
                    InteractionEvent(
                        event_id=f"{customer}-answered",
                        occurred_at=now_ms - 30_000 + n,
                        customer_id=customer,
                        channel=channel,
                        contact_id=f"{customer}-contact",
                        type=AGENT_REPLY,
                        actor=AGENT,
                    )
                )
    return [SimItem(event) for event in events]


class Prometheus:
    """``prometheus`` on a free local port scraping the given ports every second."""

    def __init__(self, binary: str, workdir: Path, port: int, targets: list[int]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.log_file = workdir / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "cxstream-worker",
                    "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in targets]}],
                }
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.command = [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
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

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_file.read_text(errors="replace")[-chars:]


def waiting_gauges(worker: WorkerProcess) -> dict[str, float]:
    return {
        channel: metric_value(worker.web_port, "cxstream_waiting_contacts", channel=channel)
        for channel in (*WAITING, *ANSWERED)
    }


def wall(worker: WorkerProcess) -> dict[str, Any]:
    doc = json.loads(fetch(base_url(worker) + "/ops/wall.json", timeout=10.0))
    return {
        "scope": doc["live_scope"],
        "note": doc["live_note"],
        "waiting": {c["channel"]: c["waiting_now"] for c in doc["channels"]},
    }


def poll(what: str, check: Callable[[], Any], timeout: float, logs: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, AssertionError, KeyError) as exc:  # not up yet, not scraped yet
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout}s (last: {last!r})\n{logs()}")


def page_rows(driver: Any, url: str, channel: str) -> dict[str, str]:
    """The chat card's waiting rows as the page shows them: label -> value."""
    driver.get(url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = driver.execute_script(
            """const m = document.querySelector(
                 `[data-metric=waiting_now][data-channel=${arguments[0]}]`);
               if (!m) return null;
               return Array.from(m.closest('table').querySelectorAll('tr')).map(tr =>
                 Array.from(tr.querySelectorAll('td')).map(td => td.textContent));""",
            channel,
        )
        if rows:
            return {
                r[0]: r[-1] for r in rows if len(r) == 3 and r[0].startswith(("Wait", "Odottaa"))
            }
        time.sleep(0.25)
    raise AssertionError(f"no waiting-now row on {url}")


def test_the_wall_shows_waiting_now_summed_over_two_workers_by_prometheus(
    kafka_bootstrap: str,
    unique_prefix: str,
    tmp_path: Path,
    browser,  # noqa: F811
) -> None:
    binary = required_binary("/usr/bin/prometheus", "install Debian's prometheus package")
    db_url = f"sqlite:///{tmp_path / 'cxstream.db'}"
    store = SqlStore(db_url)
    store.create_schema()
    store.dispose()
    prometheus_port = free_port()
    config = {
        "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
        "worker": {"clock": "stream", "batch_size": 200, "session_update_seconds": 0.2},
        "sql": {"url": db_url},
        "ops": {"prometheus_url": f"http://127.0.0.1:{prometheus_port}"},
    }
    settings = settings_with_topics(config)
    config_file = write_config(tmp_path / "cxstream.yaml", config)
    workers = [
        WorkerProcess("worker", config_file, tmp_path / f"worker-{n}.log", free_port())
        for n in range(2)
    ]
    prometheus = Prometheus(
        binary, tmp_path / "prometheus", prometheus_port, [w.web_port for w in workers]
    )

    def logs() -> str:
        parts = [f"--- prometheus ---\n{prometheus.log_tail()}"]
        parts += [f"--- worker {n} ---\n{w.log_tail()}" for n, w in enumerate(workers)]
        return "\n".join(parts)

    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            wait_for_page(worker, "/healthz", 90.0)
        # Both hold partitions before the traffic, so each holds waiting customers.
        wait_for_members(kafka_bootstrap, process_group(settings), 2, workers[1])
        prometheus.start()
        send_items(traffic(int(time.time() * 1000)), settings)

        # Both workers' gauges together count every waiting customer once.
        def gauges_settled() -> tuple[dict[str, float], dict[str, float]] | None:
            first, second = (waiting_gauges(w) for w in workers)
            total = {c: first[c] + second[c] for c in first}
            return (first, second) if total == {**WAITING, "phone": 0.0} else None

        first, second = poll("the workers' gauges did not settle", gauges_settled, 120, logs)
        # Each worker holds some of the waiting customers, so the wall's figure is
        # a sum over two workers, not one worker's own.
        assert sum(first.values()) > 0 and sum(second.values()) > 0, (first, second)

        # The wall served by the first worker sums both through Prometheus.
        def fleet_wall() -> dict[str, Any] | None:
            shown = wall(workers[0])
            wanted = {c: first[c] + second[c] for c in first}
            if shown["scope"] != "fleet":
                return None
            return shown if {c: shown["waiting"][c] for c in wanted} == wanted else None

        shown = poll("the wall did not show the fleet's waiting contacts", fleet_wall, 60, logs)
        assert shown["note"] is None
        assert {c: shown["waiting"][c] for c in first} == {
            "chat": 7.0,
            "web_message": 4.0,
            "phone": 0.0,
        }
        assert shown["waiting"]["branch"] == 0.0  # a channel nobody waits on
        # The page labels the figure as the fleet's, in either language.
        page = base_url(workers[0]) + "/ops/wall"
        assert page_rows(browser, page, "chat") == {"Waiting now": "7"}
        assert page_rows(browser, page + "?lang=fi", "chat") == {"Odottaa nyt": "7"}

        # Prometheus gone: the worker's own figures, labelled, with a note.
        prometheus.stop()
        alone = wall(workers[0])
        assert alone["scope"] == "worker"
        assert alone["note"] is not None and alone["note"].startswith("prometheus_unavailable")
        assert {c: alone["waiting"][c] for c in first} == waiting_gauges(workers[0])
    finally:
        prometheus.stop()
        for worker in workers:
            worker.stop()
