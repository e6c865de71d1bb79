"""A channel added only in a config file gets its alerts routed to its team.

``cxstream ops alertmanager-config --config X`` writes the routing; the real
``amtool`` (deploy/install-system-deps.sh) checks it and routes test alerts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from tests.integration.test_prometheus_rules import run, tool

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

CONFIG = """\
channels:
  video_branch: {kind: digital, display_name: "Video branch"}
  kiosk: {kind: physical, alert_receiver: branch-network}
"""


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    config = tmp_path / "cx.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    output = tmp_path / "alertmanager.yml"
    assert (
        main(["ops", "alertmanager-config", "--config", str(config), "--output", str(output)]) == 0
    )
    return output


def route(config: Path, *labels: str) -> str:
    result = run(tool("amtool"), "config", "routes", "test", f"--config.file={config}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_generated_config_passes_amtool_check(generated: Path) -> None:
    result = run(tool("amtool"), "check-config", str(generated))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ("alertname=SLABreachRateHigh", "scope=channel", "channel=video_branch"),
            "cx-video_branch",
        ),
        (("alertname=SLAWarningsPilingUp", "scope=channel", "channel=kiosk"), "branch-network"),
        (("alertname=SLABreachRateHigh", "scope=channel", "channel=branch"), "branch-network"),
        (("alertname=SLABreachRateHigh", "scope=channel", "channel=chat"), "chat-team"),
        (("alertname=ConsumerLagGrowing", "scope=platform", "topic=cx.interactions"), "platform"),
        (("alertname=SLABreachRateHigh", "scope=channel", "channel=unknown"), "platform"),
    ],
)
def test_alert_for_a_configured_channel_routes_to_its_team(
    generated: Path, labels: tuple[str, ...], receiver: str
) -> None:
    assert route(generated, *labels) == receiver
