"""The ``/ops`` wall screen in a real headless Chromium, against a real worker.

A ``cxstream worker`` (stream clock) consumes simulator traffic that breaches SLAs
from the real broker; the page, driven by Selenium, must show the figures
``/metrics`` shows, and follow new traffic without a reload. A screenshot lands in
``artifacts/ops-page.png``.

Without Chromium, chromedriver or selenium the test skips on a laptop and fails
under CI (``CI`` set), where a skip would hide a broken page.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from pipeline.settings import Settings
from tests.integration.ops_harness import (
    base_url,
    breaching_items,
    ops_figures_from_metrics,
    required_binary,
    running_worker,
    stream_settings,
    wait_until_metrics_settle,
)
from tests.integration.worker_harness import send_items, wait_until_worker_consumed

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "artifacts" / "ops-page.png"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "run deploy/install-system-deps.sh (Debian chromium and chromium-driver)"


@pytest.fixture
def browser(tmp_path: Path):
    """Headless Chromium driven through Debian's chromedriver, with a fresh profile."""
    chromium = required_binary(CHROMIUM, INSTALL_HINT)
    chromedriver = required_binary(CHROMEDRIVER, INSTALL_HINT)
    if importlib.util.find_spec("selenium") is None:
        message = "selenium is not installed: pip install selenium (a test dependency)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1920,1080",  # a wall screen
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=Service(executable_path=chromedriver, log_output=str(tmp_path / "driver.log")),
        options=options,
    )
    driver.set_page_load_timeout(30)
    # The window size flag includes window decorations; pin the viewport itself.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield driver
    finally:
        driver.quit()


def displayed_figures(driver) -> dict[str, float]:
    """Raw values of every figure on the page, keyed like ``ops_figures_from_metrics``."""
    pairs = driver.execute_script(
        """return Array.from(document.querySelectorAll('[data-metric]')).map(el =>
             [el.dataset.metric, el.dataset.channel || null, el.dataset.value ?? null]);"""
    )
    figures = {}
    for metric, channel, value in pairs:
        assert value is not None, f"{metric}@{channel} shows no value"
        figures[metric if channel is None else f"{metric}@{channel}"] = float(value)
    return figures


def wait_for_reading_after(driver, moment: float, worker, timeout: float = 20.0) -> None:
    """Wait until the page rendered a status generated after ``moment`` (unix seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generated = driver.execute_script("return document.body.dataset.generatedAt")
        if generated and float(generated) > moment:
            return
        worker.assert_running()
        time.sleep(0.25)
    raise AssertionError(
        f"the page showed no reading newer than {moment} within {timeout}s "
        f"(last: {generated!r}):\n{worker.log_tail()}"
    )


def assert_page_matches_metrics(driver, worker, settings: Settings) -> dict[str, float]:
    metrics_text = wait_until_metrics_settle(worker)
    wait_for_reading_after(driver, time.time(), worker)
    shown = displayed_figures(driver)
    expected = ops_figures_from_metrics(metrics_text, settings.channels.keys)
    assert shown == expected, worker.log_tail()
    return shown


def test_ops_page_shows_the_metrics_figures_and_follows_new_traffic(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path, browser
) -> None:
    settings, config = stream_settings(kafka_bootstrap, unique_prefix)
    items = breaching_items()
    first, second = items[:1000], items[1000:]

    with running_worker(tmp_path, config) as worker:
        send_items(first, settings)
        wait_until_worker_consumed(settings, worker, timeout=120.0)

        browser.get(base_url(worker) + "/ops")
        assert browser.title == "cxstream · live operations"
        shown = assert_page_matches_metrics(browser, worker, settings)
        assert shown["events_consumed"] > 900
        assert shown["sla_breaches@web_message"] > 0
        assert shown["oldest_unanswered_seconds@web_message"] > 0
        channels = browser.execute_script(
            "return Array.from(document.querySelectorAll('.card')).map(c => c.dataset.channel)"
        )
        assert channels == ["web_message", "branch", "phone", "chat", "web_meeting"]

        # A marker on window survives only if the page is never reloaded.
        browser.execute_script("window.__sameDocument = true;")
        send_items(second, settings)
        wait_until_worker_consumed(settings, worker, timeout=120.0)
        updated = assert_page_matches_metrics(browser, worker, settings)

        assert browser.execute_script("return window.__sameDocument === true") is True
        assert updated["events_consumed"] > shown["events_consumed"]
        assert updated["sla_breaches@web_message"] > shown["sla_breaches@web_message"]
        assert browser.find_element("id", "live").text == "live"

        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
