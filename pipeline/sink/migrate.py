"""Schema migrations (Alembic), configured in code so no alembic.ini is needed.

``upgrade(url)`` brings any database to the newest schema; the sink calls it
through :meth:`pipeline.sink.store.SqlStore.create_schema`. New migrations go in
``pipeline/sink/migrations/versions``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
HEAD = "head"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic Config for our migrations; ``connection`` (if given) is reused by env.py."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # Alembic reads options through configparser, which treats % specially.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_connection(connection: Connection, revision: str = HEAD) -> None:
    """Upgrade the database behind ``connection`` to ``revision`` (commits)."""
    command.upgrade(alembic_config(connection=connection), revision)


def upgrade(url: str, revision: str = HEAD) -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the newest)."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            upgrade_connection(connection, revision)
    finally:
        engine.dispose()
