"""The compose stack is complete and reproducible (Docker cannot run here, so the
file is checked as data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    return compose["services"]


def test_stack_has_every_service(services: dict[str, Any]) -> None:
    assert sorted(services) == sorted(
        [
            "kafka",
            "postgres",
            "topics",
            "worker",
            "sink",
            "simulator",
            "prometheus",
            "alertmanager",
            "grafana",
        ]
    )


def test_third_party_images_are_pinned_to_a_version(services: dict[str, Any]) -> None:
    images = {name: s["image"] for name, s in services.items() if "build" not in s}
    unpinned = {n: i for n, i in images.items() if ":" not in i or i.endswith((":latest", ":main"))}
    assert images["kafka"] == "apache/kafka:4.1.1"
    assert images["postgres"].startswith("postgres:16")
    assert unpinned == {}


def test_cxstream_roles_run_the_console_script_with_env_settings(
    services: dict[str, Any],
) -> None:
    commands = {
        name: services[name]["command"][0] for name in ("topics", "worker", "sink", "simulator")
    }
    env_keys = {
        name: sorted(k for k in services[name]["environment"] if k.startswith("CXSTREAM_"))
        for name in commands
    }
    assert commands == {
        "topics": "topics",
        "worker": "worker",
        "sink": "sink",
        "simulator": "simulate",
    }
    common = ["CXSTREAM_CONFIG", "CXSTREAM_KAFKA_BOOTSTRAP", "CXSTREAM_SQL_URL"]
    assert env_keys == {
        "topics": common,
        "worker": [*common, "CXSTREAM_WORKER_WEB_BIND"],
        "sink": [*common, "CXSTREAM_WORKER_WEB_BIND"],
        "simulator": common,
    }


def test_only_the_roles_with_a_web_port_bind_it_beyond_loopback_and_say_so(
    services: dict[str, Any],
) -> None:
    binds = {
        name: services[name]["environment"].get("CXSTREAM_WORKER_WEB_BIND")
        for name in ("topics", "worker", "sink", "simulator")
    }
    assert binds == {"topics": None, "worker": "0.0.0.0", "sink": "0.0.0.0", "simulator": None}


def test_worker_can_scale_because_it_publishes_no_host_port(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert [key for key in ("ports", "container_name") if key in worker] == []


def test_simulator_sends_live_traffic(services: dict[str, Any]) -> None:
    command = services["simulator"]["command"]
    assert command[:5] == ["simulate", "--start", "now", "--rate", "50"]
    assert "--output" not in command


def test_every_mounted_repo_path_exists(services: dict[str, Any]) -> None:
    sources = [
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    missing = [s for s in sources if not (REPO / s).exists()]
    assert len(sources) >= 5
    assert missing == []


def test_prometheus_mounts_the_rules_its_config_loads(services: dict[str, Any]) -> None:
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text(encoding="utf-8"))
    mounts = dict(
        v.split(":")[:2][::-1] for v in services["prometheus"]["volumes"] if v.startswith("./")
    )
    rules_dir = mounts["/etc/prometheus/rules"]
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert sorted(p.name for p in (REPO / rules_dir).glob("*.yml")) == [
        "cxstream-alerts.yml",
        "cxstream-recording.yml",
    ]


def test_cxstream_config_in_the_image_exists(services: dict[str, Any]) -> None:
    config = services["worker"]["environment"]["CXSTREAM_CONFIG"]
    assert config.startswith("/app/")
    assert (REPO / config.removeprefix("/app/")).is_file()
