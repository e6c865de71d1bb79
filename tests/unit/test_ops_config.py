"""Alertmanager routing generated from the channel registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.ops_config import alertmanager_config, render_alertmanager_config
from pipeline.settings_loader import build_settings, load_settings

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "deploy" / "alertmanager" / "alertmanager.yml"


def routes(config: dict) -> list[tuple[str, list[str]]]:
    return [(r["receiver"], r["matchers"]) for r in config["route"]["routes"]]


def test_committed_alertmanager_config_is_the_generated_one_for_the_defaults() -> None:
    generated = render_alertmanager_config(load_settings(None, environ={}))
    assert COMMITTED.read_text(encoding="utf-8") == generated


def test_default_channels_route_to_their_teams_and_platform_alerts_first() -> None:
    config = alertmanager_config(build_settings())
    assert routes(config) == [
        ("platform", ['scope="platform"']),
        ("branch-network", ['channel=~"branch|web_meeting"']),
        ("contact-centre", ['channel="phone"']),
        ("chat-team", ['channel="chat"']),
        ("digital-messaging", ['channel="web_message"']),
    ]
    assert config["route"]["receiver"] == "platform"
    assert [r["name"] for r in config["receivers"]] == [
        "platform",
        "branch-network",
        "contact-centre",
        "chat-team",
        "digital-messaging",
    ]


def test_a_channel_added_by_configuration_gets_its_own_receiver_by_default() -> None:
    settings = build_settings({"channels": {"video_branch": {"kind": "digital"}}})
    config = alertmanager_config(settings, webhook_base="https://hooks.example/")
    assert routes(config)[-1] == ("cx-video_branch", ['channel="video_branch"'])
    assert config["receivers"][-1] == {
        "name": "cx-video_branch",
        "webhook_configs": [
            {"url": "https://hooks.example/cx-video_branch", "send_resolved": True}
        ],
    }


def test_a_configured_alert_receiver_joins_the_channel_to_that_team() -> None:
    settings = build_settings(
        {"channels": {"video_branch": {"kind": "digital", "alert_receiver": "branch-network"}}}
    )
    assert routes(alertmanager_config(settings))[1] == (
        "branch-network",
        ['channel=~"branch|web_meeting|video_branch"'],
    )


def test_an_alert_receiver_that_is_not_a_plain_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"channels\.chat\.alert_receiver"):
        build_settings({"channels": {"chat": {"alert_receiver": "chat team/urgent"}}})


def test_cli_refuses_the_platform_receiver_for_a_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cx.yaml"
    config.write_text("channels:\n  chat: {alert_receiver: platform}\n", encoding="utf-8")
    assert main(["ops", "alertmanager-config", "--config", str(config)]) == 2
    assert "alert_receiver 'platform' is reserved" in capsys.readouterr().err


def test_cli_writes_the_routes_for_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "cx.yaml"
    config.write_text("channels:\n  kiosk: {kind: physical}\n", encoding="utf-8")
    output = tmp_path / "alertmanager.yml"
    assert (
        main(["--config", str(config), "ops", "alertmanager-config", "--output", str(output)]) == 0
    )
    written = yaml.safe_load(output.read_text(encoding="utf-8"))
    assert routes(written)[-1] == ("cx-kiosk", ['channel="kiosk"'])
