"""The Prometheus config, rules, rule unit tests and Alertmanager config pass the
real tools (promtool, amtool), and alerts route to the right team.

The binaries come from ``deploy/install-ops-tools.sh``. Without them the tests skip
on a laptop, but fail under CI (``CI`` set), where a skip would hide a broken rule.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"


def tool(name: str) -> str:
    """Path of a binary; skip without it locally, fail without it in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: run deploy/install-ops-tools.sh as root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_prometheus_config_is_valid() -> None:
    result = run(
        tool("promtool"), "check", "config", "--syntax-only", str(PROMETHEUS / "prometheus.yml")
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_files_are_valid() -> None:
    rule_files = sorted(str(p) for p in (PROMETHEUS / "rules").glob("*.yml"))
    result = run(tool("promtool"), "check", "rules", *rule_files)
    assert len(rule_files) == 2
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    test_files = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.yml"))
    result = run(tool("promtool"), "test", "rules", *test_files)
    assert len(test_files) == 3
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_promtool_test() -> None:
    """An alert without a test that expects it to fire is an untested alert."""
    alerts = {
        rule["alert"]
        for path in (PROMETHEUS / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {
        case["alertname"]
        for path in (PROMETHEUS / "tests").glob("*.yml")
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert len(alerts) == 10
    assert sorted(alerts - tested) == []


def test_alertmanager_config_is_valid() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ("alertname=SLABreachRateHigh", "scope=channel", "channel=web_message"),
            "digital-messaging",
        ),
        (
            ("alertname=WebMessageNearDeadline", "scope=channel", "channel=web_message"),
            "digital-messaging",
        ),
        (("alertname=SLABreachRateHigh", "scope=channel", "channel=chat"), "chat-team"),
        (("alertname=SLAWarningsPilingUp", "scope=channel", "channel=phone"), "contact-centre"),
        (
            ("alertname=ChannelSwitchFailureSpike", "scope=channel", "channel=branch"),
            "branch-network",
        ),
        (("alertname=SLABreachRateHigh", "scope=channel", "channel=web_meeting"), "branch-network"),
        (("alertname=ConsumerLagGrowing", "scope=platform", "topic=cx.interactions"), "platform"),
        (("alertname=WorkerDown", "scope=platform", "job=cxstream-worker"), "platform"),
        (
            ("alertname=WorkerRunsInterpretedCore", "scope=platform", "job=cxstream-worker"),
            "platform",
        ),
        (("alertname=SLABreachRateHigh", "scope=channel", "channel=new_channel"), "platform"),
    ],
)
def test_alert_routes_to_the_owning_team(labels: tuple[str, ...], receiver: str) -> None:
    result = run(
        tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """Every Grafana PromQL query parses: wrapped as recording rules for promtool."""
    grafana_values = {"$__rate_interval": "1m", "$__range": "1h", "$channel": ".*"}
    exprs = []
    for path in sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            for target in panel.get("targets", []):
                if "expr" in target:
                    expr = target["expr"]
                    for name, value in grafana_values.items():
                        expr = expr.replace(name, value)
                    exprs.append(expr)
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    rule_file = tmp_path / "dashboards.yml"
    rule_file.write_text(yaml.safe_dump(rules), encoding="utf-8")

    result = run(tool("promtool"), "check", "rules", str(rule_file))
    assert len(exprs) >= 20
    assert result.returncode == 0, result.stdout + result.stderr
