"""The wall's fleet-wide waiting-now and oldest wait, parsed from Prometheus' HTTP API.

A tiny local HTTP server answers with canned Prometheus JSON: this tests our
query and parsing; tests/integration/test_wall_prometheus.py runs a real Prometheus.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from pipeline.settings_loader import build_settings
from pipeline.wall import read_wall, wall_config
from pipeline.wall_prometheus import (
    OLDEST_QUERY,
    WAITING_QUERY,
    PrometheusUnavailable,
    query_by_channel,
    wall_live,
)
from tests.unit.test_wall_page import filled_store


def vector(values: dict[str, str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"channel": channel}, "value": [1_700_000_000.0, value]}
                for channel, value in values.items()
            ],
        },
    }


ANSWERS = {
    WAITING_QUERY: vector({"chat": "5", "phone": "2"}),
    OLDEST_QUERY: vector({"chat": "61.5", "phone": "12"}),
}


class CannedPrometheus(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answers: dict[str, Any], status: int = 200) -> None:
        self.answers = answers
        self.status = status
        self.queries: list[str] = []
        super().__init__(("127.0.0.1", 0), CannedHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class CannedHandler(BaseHTTPRequestHandler):
    server: CannedPrometheus

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query).get("query", [""])[0]
        self.server.queries.append(f"{parts.path} {query}")
        body = json.dumps(self.server.answers.get(query, vector({}))).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serving(server: CannedPrometheus) -> Iterator[CannedPrometheus]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def prometheus() -> Iterator[CannedPrometheus]:
    yield from serving(CannedPrometheus(dict(ANSWERS)))


@pytest.fixture
def failing_prometheus() -> Iterator[CannedPrometheus]:
    yield from serving(CannedPrometheus({}, status=503))


def test_a_vector_by_channel_is_read_as_floats_per_channel(prometheus: CannedPrometheus) -> None:
    assert query_by_channel(prometheus.url + "/", WAITING_QUERY) == {"chat": 5.0, "phone": 2.0}
    assert prometheus.queries == [f"/api/v1/query {WAITING_QUERY}"]


def test_the_wall_takes_the_fleet_figures_when_prometheus_answers(
    prometheus: CannedPrometheus,
) -> None:
    live = wall_live(prometheus.url, {"chat": 3.0}, {"chat": 1.0})

    assert (live.scope, live.waiting, live.oldest_seconds, live.note) == (
        "fleet",
        {"chat": 5.0, "phone": 2.0},
        {"chat": 61.5, "phone": 12.0},
        None,
    )


def test_an_error_answer_falls_back_to_the_workers_own_figures_with_a_note(
    failing_prometheus: CannedPrometheus,
) -> None:
    with pytest.raises(PrometheusUnavailable):
        query_by_channel(failing_prometheus.url, WAITING_QUERY)
    live = wall_live(failing_prometheus.url, {"chat": 3.0}, {"chat": 1.0})

    assert (live.scope, live.waiting, live.oldest_seconds) == (
        "worker",
        {"chat": 1.0},
        {"chat": 3.0},
    )
    assert live.note is not None and live.note.startswith("prometheus_unavailable")


def test_a_closed_port_on_the_standalone_wall_shows_no_live_figures_with_a_note() -> None:
    closed = CannedPrometheus({})
    url = closed.url
    closed.server_close()  # nothing listens there any more

    live = wall_live(url, None, None, timeout=0.5)

    assert (live.scope, live.waiting, live.oldest_seconds) == (None, None, None)
    assert live.note is not None


def test_a_failed_query_answer_is_not_read_as_zero(prometheus: CannedPrometheus) -> None:
    prometheus.answers[WAITING_QUERY] = {"status": "error", "error": "parse error"}
    with pytest.raises(PrometheusUnavailable):
        query_by_channel(prometheus.url, WAITING_QUERY)


def test_the_wall_document_shows_fleet_waiting_now_per_channel(
    tmp_path: Path, prometheus: CannedPrometheus
) -> None:
    settings = build_settings({})
    engine = create_engine(filled_store(tmp_path, datetime.now(UTC)))
    doc = read_wall(
        engine,
        wall_config(settings),
        None,
        oldest_unanswered={"chat": 3.0},
        waiting_now={"chat": 1.0},
        prometheus_url=prometheus.url,
    )
    engine.dispose()

    cards = {card["channel"]: card for card in doc["channels"]}
    assert (doc["live_scope"], doc["live_note"]) == ("fleet", None)
    assert (cards["chat"]["waiting_now"], cards["chat"]["oldest_unanswered_seconds"]) == (5.0, 61.5)
    assert (cards["branch"]["waiting_now"], cards["branch"]["oldest_unanswered_seconds"]) == (
        0.0,
        0.0,
    )


def test_without_prometheus_the_document_keeps_the_serving_workers_figures(tmp_path: Path) -> None:
    settings = build_settings({})
    engine = create_engine(filled_store(tmp_path, datetime.now(UTC)))
    doc = read_wall(
        engine,
        wall_config(settings),
        None,
        oldest_unanswered={"chat": 3.0},
        waiting_now={"chat": 1.0},
    )
    standalone = read_wall(engine, wall_config(settings), None)
    engine.dispose()

    chat = next(c for c in doc["channels"] if c["channel"] == "chat")
    assert (doc["live_scope"], chat["waiting_now"], chat["oldest_unanswered_seconds"]) == (
        "worker",
        1.0,
        3.0,
    )
    alone = next(c for c in standalone["channels"] if c["channel"] == "chat")
    assert (standalone["live_scope"], alone["waiting_now"]) == (None, None)


def test_the_ops_settings_default_to_english_and_no_prometheus_and_reject_other_languages() -> None:
    from pipeline.errors import ConfigError

    assert (build_settings({}).ops.prometheus_url, build_settings({}).ops.wall_language) == (
        None,
        "en",
    )
    ops = build_settings({"ops": {"prometheus_url": "http://prom:9090", "wall_language": "fi"}}).ops
    assert (ops.prometheus_url, ops.wall_language) == ("http://prom:9090", "fi")
    with pytest.raises(ConfigError, match=r"ops\.wall_language"):
        build_settings({"ops": {"wall_language": "de"}})
