"""Pytest plugin: a real PostgreSQL for any integration test that asks for one.

Registered from ``tests/conftest.py``, so every test module can use the fixtures:

- ``postgres_server`` (session): the server; ``stop()``/``start()`` for outage tests.
- ``postgres_url`` (session): a URL to the server's ``postgres`` database.
- ``pg_database_url`` (function): a URL to a fresh, empty database of its own,
  dropped after the test.
- ``dedicated_postgres`` (function): a server of the test's own, to stop and
  start without disturbing other tests.

``CXSTREAM_TEST_POSTGRES_URL`` points the tests at an existing server; otherwise
:func:`start_local_postgres` starts one for the session (only when a test requests
one of these fixtures): on a free port it picks, in a temporary folder of its
own that is removed afterwards, so a developer's own server or a second test
session holding some port disturbs nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "local-postgres.sh"
#: local-postgres.sh's exit status when the port it was given is taken.
PORT_IN_USE = 3
#: Ports tried before giving up: each is free when picked, so only races use more.
PORT_ATTEMPTS = 5


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick for port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A test server; ``data_dir`` is None when it is external (not ours to stop)."""

    url: str
    data_dir: str | None
    port: int | None = None

    def stop(self) -> None:
        """Stop the server (fast mode); ``start()`` brings it back on the same port."""
        assert self.data_dir is not None, "cannot stop an external server"
        subprocess.run([str(SCRIPT), "stop", self.data_dir], check=True)

    def start(self) -> None:
        """Start it again after ``stop()``: same port, so ``url`` stays valid."""
        assert self.data_dir is not None, "cannot start an external server"
        subprocess.run([str(SCRIPT), "start", self.data_dir, str(self.port)], check=True,
                       text=True, stdout=subprocess.PIPE)  # fmt: skip

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        assert self.data_dir is not None, "cannot remove an external server"
        try:
            self.stop()
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_local_postgres(
    prefix: str = "cxstream-pg-", *, pick_port: Callable[[], int] = free_port
) -> PostgresServer:
    """Start a server of its own on a free port; the caller ``remove()``s it.

    A port free when picked can be taken before the server binds it; the script
    then exits with PORT_IN_USE and another port is tried.
    """
    # Not pytest's tmp_path: its parents are private to root, and the server runs
    # as the postgres user, which must reach the folder.
    server = PostgresServer(url="", data_dir=tempfile.mkdtemp(prefix=prefix))
    assert server.data_dir is not None
    try:
        for _ in range(PORT_ATTEMPTS):
            port = pick_port()
            result = subprocess.run(
                [str(SCRIPT), "start", server.data_dir, str(port)],
                text=True,
                capture_output=True,
            )
            if result.returncode == 0:
                server.url, server.port = result.stdout.strip().splitlines()[-1], port
                return server
            if result.returncode != PORT_IN_USE:
                raise RuntimeError(f"local-postgres.sh start failed:\n{result.stderr}")
        raise RuntimeError(f"no free port for PostgreSQL after {PORT_ATTEMPTS} attempts")
    except BaseException:
        server.remove()
        raise


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get("CXSTREAM_TEST_POSTGRES_URL")
    if external:
        yield PostgresServer(url=external, data_dir=None)
        return
    server = start_local_postgres()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def dedicated_postgres() -> Iterator[PostgresServer]:
    """A server of one test's own, so stopping it disturbs no other test."""
    server = start_local_postgres("cxstream-pg-own-")
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url


def _admin_dsn(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql", database="postgres")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A URL to a new, empty database that is dropped after the test."""
    name = f"cxtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_dsn(postgres_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_admin_dsn(postgres_url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
