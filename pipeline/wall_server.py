"""``cxstream wall``: the fleet-wide wall as a small standalone web server.

Runs apart from the workers (stdlib ``ThreadingHTTPServer``, no Faust), reads the
SQL store and Kafka like every worker's ``/ops/wall`` does, and binds 127.0.0.1
unless told otherwise, like the worker's web server. Routes: ``/`` and
``/ops/wall`` (the page), ``/ops/wall.json`` (the document), ``/healthz``.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, create_engine

from pipeline.settings import KafkaSettings
from pipeline.wall import WallConfig, read_wall

log = logging.getLogger(__name__)


def wall_html() -> bytes:
    return resources.files("pipeline.static").joinpath("wall.html").read_bytes()


class WallServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        engine: Engine,
        config: WallConfig,
        kafka: KafkaSettings | None,
        prometheus_url: str | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.kafka = kafka
        self.prometheus_url = prometheus_url
        self.html = wall_html()
        super().__init__(address, WallHandler)


class WallHandler(BaseHTTPRequestHandler):
    server: WallServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/ops/wall"):
            self._send(200, "text/html; charset=utf-8", self.server.html)
        elif path == "/ops/wall.json":
            try:
                document = read_wall(
                    self.server.engine,
                    self.server.config,
                    self.server.kafka,
                    prometheus_url=self.server.prometheus_url,
                )
            except Exception as exc:  # the database is down: say so, keep serving
                log.warning("wall: SQL store unavailable: %s", exc)
                self._send(503, "application/json", json.dumps({"error": str(exc)}).encode())
                return
            self._send(200, "application/json", json.dumps(document).encode())
        elif path == "/healthz":
            self._send(200, "text/plain", b"ok\n")
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("wall: " + format, *args)


def serve_wall(
    url: str,
    config: WallConfig,
    kafka: KafkaSettings | None,
    bind: str,
    port: int,
    prometheus_url: str | None = None,
) -> int:
    """Serve until interrupted; prints the address it listens on."""
    engine = create_engine(url)
    server = WallServer((bind, port), engine, config, kafka, prometheus_url)
    host, bound = server.server_address[:2]
    print(f"wall serving url=http://{host!s}:{bound}/ops/wall", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.dispose()
    return 0
