"""The fleet-wide wall (``/ops/wall``) in a real headless Chromium, against two real
workers, the real sink into SQLite and the real broker.

Simulator traffic dated in the last hours (so it falls in the wall's windows) on a
configuration with eight channels; the page served by one worker must show what
the SQL store says for the same moment, fit 1920x1080 and 1280x800 without a card
leaving the viewport (screenshots in ``artifacts/``), and keep its figures when the
other worker restarts. Without Chromium the test fails under CI, like
``test_ops_page.py``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from pipeline.tools.simulator import SimulatorConfig, generate
from pipeline.topics import CONTACTS, JOURNEY_SIGNALS, SESSIONS, SLA_EVENTS
from tests.integration.ops_harness import base_url, fetch, wait_for_page
from tests.integration.test_ops_page import browser  # noqa: F401 (a fixture)
from tests.integration.worker_harness import (
    WorkerProcess,
    committed_offsets,
    end_offsets,
    free_port,
    input_topic,
    metric_value,
    process_group,
    send_items,
    settings_with_topics,
    sink_group,
    wait_until_consumed,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
EXTRA_CHANNELS = {
    "social": {"kind": "digital", "display_name": "Social media", "synchronous": False},
    "video_branch": {"kind": "digital", "display_name": "Video branch", "synchronous": True},
    "callback": {"kind": "digital", "display_name": "Call-back", "synchronous": True},
}
TARGETS = {"web_message": 7200.0, "chat": 60.0, "phone": 180.0}


def midday_zone(now: datetime) -> str:
    """A fixed-offset zone in which ``now`` is about noon. The wall's "today" and
    "this shift" are local to the banking calendar's zone, and the test's 3 h of
    traffic must fall within both whenever it runs (in Helsinki, right after
    midnight, "today" is minutes old)."""
    offset = (12 - now.hour) % 24
    if offset > 14:  # the Etc/GMT zones span UTC-12 .. UTC+14
        offset -= 24
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


def recent_items() -> list[Any]:
    """About 3 h of busy traffic ending now (nothing in the future)."""
    now_ms = int(time.time() * 1000)
    config = SimulatorConfig(
        customers=300,
        count=1500,
        seed=11,
        start_ms=now_ms - 3 * 3600 * 1000,
        arrival_rate_per_hour=400.0,
    )
    return [
        item
        for item in generate(config)
        # malformed items too: they become dead letters
        if item.event is None or item.event.occurred_at <= now_ms
    ]


def expected_from_sql(url: str, at: float, today_start: float, shift_start: float) -> dict:
    """Each channel's figures, by plain SQL written here (not the wall's queries)."""
    now = datetime.fromtimestamp(at, UTC)
    recent = now - timedelta(minutes=15)
    today = datetime.fromtimestamp(today_start, UTC)
    shift = datetime.fromtimestamp(shift_start, UTC)
    engine = create_engine(url)
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    figures: dict[str, float | None] = {}
    try:
        with engine.connect() as conn:
            for channel in ["web_message", "branch", "phone", "chat", "web_meeting"]:
                target = TARGETS.get(channel)
                for name, start in (("recent", recent), ("today", today)):
                    answered, within, abandoned, avg = conn.execute(
                        text(
                            "SELECT COUNT(first_reply_seconds),"
                            " SUM(CASE WHEN first_reply_seconds <= :target THEN 1 ELSE 0 END),"
                            " SUM(CASE WHEN outcome = 'abandoned' AND first_reply_seconds IS NULL"
                            "     THEN 1 ELSE 0 END),"
                            " AVG(first_reply_seconds)"
                            " FROM contacts WHERE channel = :channel"
                            " AND started_at >= :start AND started_at < :end"
                        ),
                        {
                            "target": target if target is not None else -1.0,
                            "channel": channel,
                            "start": start.strftime(fmt),
                            "end": now.strftime(fmt),
                        },
                    ).one()
                    offered = answered + (abandoned or 0)
                    key = f"@{channel}"
                    figures[f"{name}.service_level{key}"] = (
                        (within or 0) / offered
                        if offered and target is not None
                        else (0.0 if offered else None)
                    )
                    figures[f"{name}.average_speed_of_answer{key}"] = avg
                    figures[f"{name}.abandonment{key}"] = (
                        (abandoned or 0) / offered if offered else None
                    )
                for name, start in (("shift", shift), ("today", today)):
                    for kind, label in (("warning", "warnings"), ("breach", "breaches")):
                        figures[f"{label}_{name}{key}"] = conn.execute(
                            text(
                                "SELECT COUNT(*) FROM sla_events WHERE channel = :channel"
                                " AND kind = :kind AND fired_at >= :start AND fired_at < :end"
                            ),
                            {
                                "channel": channel,
                                "kind": kind,
                                "start": start.strftime(fmt),
                                "end": now.strftime(fmt),
                            },
                        ).scalar_one()
                figures[f"switch_failures_last_hour{key}"] = conn.execute(
                    text(
                        "SELECT COUNT(*) FROM channel_switch_failures WHERE from_channel = :channel"
                        " AND occurred_at >= :start AND occurred_at < :end"
                    ),
                    {
                        "channel": channel,
                        "start": (now - timedelta(hours=1)).strftime(fmt),
                        "end": now.strftime(fmt),
                    },
                ).scalar_one()
    finally:
        engine.dispose()
    return figures


def reading_after(driver, moment: float, worker: WorkerProcess, timeout: float = 30.0) -> dict:
    """The page's figures and the document time they belong to, read in one script
    (atomic: the page cannot re-render in between), once it shows a reading newer
    than ``moment``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generated, pairs = driver.execute_script(
            """return [document.body.dataset.generatedAt,
               Array.from(document.querySelectorAll('.card [data-metric]')).map(el =>
                 [el.dataset.metric, el.dataset.channel, el.dataset.value])];"""
        )
        if generated and float(generated) > moment:
            figures = {
                f"{metric}@{channel}": None if value == "null" else float(value)
                for metric, channel, value in pairs
            }
            return {"generated_at": float(generated), "figures": figures}
        worker.assert_running()
        time.sleep(0.25)
    raise AssertionError(f"no wall reading after {moment}:\n{worker.log_tail()}")


def wait_until_fleet_consumed(settings, workers: list[WorkerProcess], timeout: float) -> None:
    """Every input record committed by the group and applied by the worker holding
    its partition (each partition's lag gauge is 0 on one of the workers)."""
    topic = input_topic(settings)
    group = process_group(settings)
    wait_until_consumed(settings.kafka.bootstrap, group, topic, workers[0], timeout)
    partitions = sorted(end_offsets(settings.kafka.bootstrap, topic))
    deadline = time.monotonic() + timeout
    applied: set[int] = set()
    while time.monotonic() < deadline:
        for worker in workers:
            worker.assert_running()
            for partition in partitions:
                try:
                    lag = metric_value(
                        worker.web_port,
                        "cxstream_consumer_lag",
                        topic=topic,
                        partition=str(partition),
                    )
                except (AssertionError, OSError):  # not this worker's partition
                    continue
                if lag == 0:
                    applied.add(partition)
        if applied == set(partitions):
            return
        time.sleep(0.5)
    raise AssertionError(f"partitions applied: {sorted(applied)} of {partitions}")


def wait_until_sink_stored(settings, sink: WorkerProcess, timeout: float) -> None:
    """The sink group committed every record of the topics the wall's tables come from
    (the sink commits after its transaction, so then the tables hold them all)."""
    bootstrap = settings.kafka.bootstrap
    group = sink_group(settings)
    topics = [settings.kafka.topic(s) for s in (CONTACTS, SESSIONS, SLA_EVENTS, JOURNEY_SIGNALS)]
    ends = {topic: end_offsets(bootstrap, topic) for topic in topics}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sink.assert_running()
        behind = {
            topic: committed
            for topic in topics
            if any(
                (committed := committed_offsets(bootstrap, group, topic)).get(p, 0) < end
                for p, end in ends[topic].items()
            )
        }
        if not behind:
            return
        time.sleep(0.5)
    raise AssertionError(f"the sink did not store {sorted(behind)}:\n{sink.log_tail()}")


def assert_cards_fit(driver, width: int, height: int, name: str) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    time.sleep(0.5)
    rects = driver.execute_script(
        """return Array.from(document.querySelectorAll('.card')).map(c => {
             const r = c.getBoundingClientRect();
             return [c.dataset.channel, r.left, r.right, c.scrollWidth, c.clientWidth];});"""
    )
    inner = driver.execute_script("return document.documentElement.clientWidth")
    assert len(rects) >= 8
    for channel, left, right, scroll_width, client_width in rects:
        assert left >= 0 and right <= inner, (channel, left, right, inner)
        assert scroll_width <= client_width, (channel, scroll_width, client_width)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000


def test_wall_shows_the_sql_figures_of_the_whole_fleet_and_survives_a_worker_restart(
    kafka_bootstrap: str,
    unique_prefix: str,
    tmp_path: Path,
    browser,  # noqa: F811
) -> None:
    db_url = f"sqlite:///{tmp_path / 'cxstream.db'}"
    config = {
        "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
        "worker": {"clock": "stream", "batch_size": 200, "session_update_seconds": 0.2},
        "sql": {"url": db_url, "batch_size": 500, "batch_seconds": 0.5},
        "channels": EXTRA_CHANNELS,
        "calendars": {"banking_hours": {"timezone": midday_zone(datetime.now(UTC))}},
    }
    settings = settings_with_topics(config)
    config_file = write_config(tmp_path / "cxstream.yaml", config)
    workers = [
        WorkerProcess(name, config_file, tmp_path / f"{name}.log", free_port())
        for name in ("worker", "worker")
    ]
    workers[1].log_file = tmp_path / "worker-b.log"
    sink = WorkerProcess("sink", config_file, tmp_path / "sink.log", free_port())
    try:
        for process in (*workers, sink):
            process.start()
        for process in (*workers, sink):
            wait_for_page(process, "/healthz", 90.0)
        send_items(recent_items(), settings)
        wait_until_fleet_consumed(settings, workers, timeout=180.0)
        wait_until_sink_stored(settings, sink, timeout=180.0)

        browser.get(base_url(workers[0]) + "/ops/wall")
        assert browser.title == "cxstream · ops wall"
        before = compare_with_sql(browser, workers[0], db_url)
        # The simulator's weekend evening has chat and web messages only.
        assert before["today.service_level@chat"] is not None
        assert sum(v or 0 for k, v in before.items() if k.startswith("breaches_today")) > 0
        assert_cards_fit(browser, 1920, 1080, "wall-1920x1080.png")
        assert_cards_fit(browser, 1280, 800, "wall-1280x800.png")
        health = browser.execute_script(
            "return [document.querySelector('[data-metric=workers]').dataset.value,"
            " document.querySelector('[data-metric=consumer_lag]').dataset.value]"
        )
        assert health == ["2", "0"]
        # Dead letters per minute are read from the dead-letter topic: a count, not
        # "unknown" (how many fell in the last minute depends on the test's pace).
        dead_letters = browser.execute_script(
            "return document.querySelector('[data-metric=dead_letters_per_minute]').dataset.value"
        )
        assert dead_letters != "null" and int(dead_letters) >= 0

        workers[1].stop()
        workers[1].start()
        wait_for_page(workers[1], "/healthz", 90.0)
        after = compare_with_sql(browser, workers[0], db_url)
        # Today's and this shift's figures are history: the restart changes none of
        # them (the 15-minute window slides meanwhile, and the oldest waiting item is
        # the serving worker's own gauge, whose partitions the rebalance moved).
        lasting = [k for k in before if k.startswith(("today.", "warnings_", "breaches_"))]
        assert {k: after[k] for k in lasting} == {k: before[k] for k in lasting}
        assert sum(after[k] or 0 for k in lasting if k.startswith("breaches_today")) > 0
        browser.get(base_url(workers[0]) + "/ops/wall?lang=fi")
        reading_after(browser, 0.0, workers[0])
        assert browser.find_element("css selector", "[data-label=lag]").text == "KÄSITTELYVIIVE"
        # The restarted worker serves the same wall.
        other = fetch(base_url(workers[1]) + "/ops/wall.json")
        assert b'"channels"' in other
    finally:
        for process in (*workers, sink):
            process.stop()


def compare_with_sql(driver, worker: WorkerProcess, db_url: str) -> dict[str, float | None]:
    """Wait for a fresh reading, then the page's figures must equal plain SQL at its time."""
    reading = reading_after(driver, time.time(), worker)
    windows = driver.execute_script("return fetch('/ops/wall.json').then(r => r.json())")
    page = reading["figures"]
    expected = expected_from_sql(
        db_url,
        reading["generated_at"],
        windows["windows"]["today_start"],
        windows["windows"]["shift_start"],
    )
    for key, value in expected.items():
        got = page[key]
        if value is None or got is None:
            assert got == value, key
        else:
            assert got == pytest.approx(value, rel=1e-9), key
    return page
