"""Pytest plugin: a real PostgreSQL for any integration test that asks for one.

Registered from ``tests/conftest.py``, so every test module can use the fixtures:

- ``postgres_server`` (session): the server; ``stop()``/``start()`` for outage tests.
- ``postgres_url`` (session): a URL to the server's ``postgres`` database.
- ``pg_database_url`` (function): a URL to a fresh, empty database of its own,
  dropped after the test.

``CXSTREAM_TEST_POSTGRES_URL`` points the tests at an existing server; otherwise
``deploy/postgres/local-postgres.sh`` starts one in a temporary folder for the
session (only when a test requests one of these fixtures).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "local-postgres.sh"
PORT = "55433"  # not the script's default, so a developer's own server is left alone


@dataclass
class PostgresServer:
    """The session's server; ``data_dir`` is None when it is external (not ours to stop)."""

    url: str
    data_dir: str | None

    def stop(self) -> None:
        assert self.data_dir is not None, "cannot stop an external server"
        subprocess.run([str(SCRIPT), "stop", self.data_dir, PORT], check=True)

    def start(self) -> None:
        assert self.data_dir is not None, "cannot start an external server"
        subprocess.run([str(SCRIPT), "start", self.data_dir, PORT], check=True, text=True,
                       stdout=subprocess.PIPE)  # fmt: skip


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get("CXSTREAM_TEST_POSTGRES_URL")
    if external:
        yield PostgresServer(url=external, data_dir=None)
        return
    # Not pytest's tmp_path: its parents are private to root, and the server runs
    # as the postgres user, which must reach the folder.
    data_dir = tempfile.mkdtemp(prefix="cxstream-pg-")
    result = subprocess.run(
        [str(SCRIPT), "start", data_dir, PORT], check=True, text=True, stdout=subprocess.PIPE
    )
    server = PostgresServer(url=result.stdout.strip().splitlines()[-1], data_dir=data_dir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


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
