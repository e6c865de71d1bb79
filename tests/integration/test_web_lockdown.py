"""The worker's and the sink's web servers: loopback by default, read-only, no Faust views.

Real ``cxstream worker`` and ``cxstream sink`` processes serve their pages; every
route their app registers (enumerated from the aiohttp router of the same app,
built here the way the command builds it) must refuse POST, PUT, DELETE and
PATCH, and Faust's built-in views (``/router``, ``/table``, statistics, graph,
performance) must not exist.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agents.worker import create_role_app
from pipeline.sink.store import SqlStore
from tests.integration.ops_harness import wait_for_page
from tests.integration.worker_harness import (
    WorkerProcess,
    free_port,
    settings_with_topics,
    write_config,
)

WRITE_METHODS = ("POST", "PUT", "DELETE", "PATCH")
#: Faust's built-in views, by the paths its blueprints mount.
FAUST_VIEWS = (
    "/router/",
    "/router/customer-state/get/",
    "/table/",
    "/table/customer-state/",
    "/table/customer-state/key/",
    "/graph/",
    "/assignment/",
    "/performance/",
)


def request(port: int, method: str, path: str) -> int:
    url = f"http://127.0.0.1:{port}{path}"
    data = b"{}" if method in ("POST", "PUT", "PATCH") else None
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def served_paths(config: dict, role: str) -> list[str]:
    """Every path the role's app serves, from its aiohttp router (variables filled in)."""
    app = create_role_app(settings_with_topics(config), role)
    app.web.init_server()  # applies the blueprints, as the web server's start does
    paths = set()
    for route in app.web.web_app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else None
        if canonical:
            paths.add(re.sub(r"\{[^}]+\}", "x", canonical))
    return sorted(paths)


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a listening TCP socket on ``port`` (Linux /proc)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


@pytest.mark.parametrize("role", ["worker", "sink"])
def test_every_route_refuses_writes_and_faust_views_are_gone(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path, role: str
) -> None:
    config = {
        "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": unique_prefix},
        "sql": {"url": f"sqlite:///{tmp_path / 'sink.db'}"},
        "worker": {"clock": "stream"},
    }
    paths = served_paths(config, "process" if role == "worker" else "sink")
    expected = {"/", "/healthz", "/metrics"} | (
        {"/ops", "/ops/status.json", "/ops/wall", "/ops/wall.json"} if role == "worker" else set()
    )
    assert set(paths) == expected
    # The wall reads the sink's tables; a store without them answers 503 (not readable).
    SqlStore(config["sql"]["url"]).create_schema()

    config_file = write_config(tmp_path / "cxstream.yaml", config)
    port = free_port()
    server = WorkerProcess(role, config_file, tmp_path / f"{role}.log", port).start()
    try:
        wait_for_page(server, "/healthz", 60.0)

        refused = {
            (method, path): request(port, method, path)
            for path in paths
            for method in WRITE_METHODS
        }
        builtin = {path: request(port, "GET", path) for path in FAUST_VIEWS}
        readable = {path: request(port, "GET", path) for path in paths}

        assert {key: code for key, code in refused.items() if code not in (404, 405)} == {}
        assert builtin == dict.fromkeys(FAUST_VIEWS, 404)
        assert readable == dict.fromkeys(paths, 200)
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        server.stop()
