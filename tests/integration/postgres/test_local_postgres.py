"""The test PostgreSQL needs no fixed port: it takes a free one, and its own folder."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import make_url

from tests.integration.postgres_fixtures import PostgresServer, free_port, start_local_postgres

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

#: The port the fixtures used to hard-code; another server may well hold it.
OLD_FIXED_PORT = 55433


@pytest.fixture
def old_port_held() -> Iterator[int]:
    """Hold 55433 with a plain listening socket (or find it already held)."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", OLD_FIXED_PORT))
        holder.listen()
    except OSError as exc:
        # Held by someone else already: the situation under test.
        assert exc.errno == errno.EADDRINUSE, exc
    try:
        yield OLD_FIXED_PORT
    finally:
        holder.close()


def _select_one(server: PostgresServer) -> int:
    dsn = make_url(server.url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


def test_a_second_server_starts_while_the_old_fixed_port_is_held(old_port_held: int) -> None:
    server = start_local_postgres()
    try:
        assert server.port is not None
        assert server.port != old_port_held
        assert make_url(server.url).port == server.port
        assert _select_one(server) == 1
    finally:
        server.remove()
    assert server.data_dir is not None
    assert not os.path.exists(server.data_dir)


def test_a_port_taken_between_picking_and_starting_is_replaced_by_another(
    old_port_held: int,
) -> None:
    """The race: a free port picked, then taken by someone else before the server binds it."""
    picks = iter([old_port_held])
    server = start_local_postgres(pick_port=lambda: next(picks, None) or free_port())
    try:
        assert server.port not in (None, old_port_held)
        assert _select_one(server) == 1
    finally:
        server.remove()


def test_a_stopped_server_starts_again_on_the_same_port(old_port_held: int) -> None:
    """Outage tests stop and start the server; the sink's URL must stay valid."""
    server = start_local_postgres()
    try:
        url = server.url
        server.stop()
        with pytest.raises(psycopg.OperationalError):
            _select_one(server)
        server.start()
        assert server.url == url
        assert _select_one(server) == 1
    finally:
        server.remove()
