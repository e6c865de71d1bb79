"""Write a replay's output records into SQL, exactly as the streaming sink would.

The records go through the same Avro output codecs the worker uses on the way to
Kafka and the sink uses on the way back, so the store receives identically
shaped dicts from both paths and the tables compare row by row.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import create_engine, inspect, make_url, select, text

from pipeline.contract.codec import RecordCodec
from pipeline.core.identity import IdentityLinkRecord
from pipeline.core.records import OUTPUT_TYPES, OutputRecord
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.sink.pseudonym import Pseudonymizer
from pipeline.sink.store import SqlStore

BATCH_SIZE = 1000

# A run name becomes part of a file name and a PostgreSQL schema name (run_NAME).
RUN_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
MIX_HINT = "replay into a new database, or give --run NAME to keep this run apart"


def run_url(url: str, run: str | None) -> str:
    """Where run ``run`` of database ``url`` lives; ``url`` itself when ``run`` is None.

    A run is a namespace beside the unnamed one the live sink writes: in SQLite a
    file next to the database (``var/cxstream.db`` -> ``var/cxstream.run_NAME.db``),
    in PostgreSQL the schema ``run_NAME`` of the same database. Either way an
    analyst reaches it as ``run_NAME.<table>`` (SQLite: after ``ATTACH``), so two
    runs compare in one query (docs/sql.md, "Runs").
    """
    if run is None:
        return url
    if not RUN_NAME.fullmatch(run):
        raise ConfigError(
            f"--run {run!r}: a run name is a lower-case letter, then up to 39 "
            "lower-case letters, digits or underscores"
        )
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError("--run needs a SQLite file, not an in-memory database")
        path = Path(parsed.database)
        named = path.with_name(f"{path.stem}.run_{run}{path.suffix or '.db'}")
        return parsed.set(database=str(named)).render_as_string(hide_password=False)
    if parsed.get_backend_name() == "postgresql":
        query = dict(parsed.query)
        query["options"] = f"-csearch_path=run_{run}"
        return parsed.set(query=query).render_as_string(hide_password=False)
    raise ConfigError(f"--run: runs are kept in SQLite or PostgreSQL, not {parsed.drivername}")


def run_settings(settings: Settings, run: str | None) -> Settings:
    """``settings`` with ``sql.url`` pointing at run ``run`` (unchanged when None)."""
    if run is None:
        return settings
    sql = dataclasses.replace(settings.sql, url=run_url(settings.sql.url, run))
    return dataclasses.replace(settings, sql=sql)


def tables_with_rows(url: str) -> list[str]:
    """The cxstream tables of ``url`` that hold at least one row, in schema order.

    A PostgreSQL run schema (``search_path`` in the URL) is created first if missing,
    so that a new run starts in an empty schema.
    """
    from pipeline.sink.models import Base

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            schema = _run_schema(url)
            if schema is not None:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            return [
                table.name
                for table in Base.metadata.sorted_tables
                if table.name in present
                and connection.execute(select(1).select_from(table).limit(1)).first()
            ]
    finally:
        engine.dispose()


def _run_schema(url: str) -> str | None:
    options = str(make_url(url).query.get("options", ""))
    found = re.fullmatch(r"-csearch_path=(run_[a-z0-9_]+)", options)
    return found.group(1) if found else None


def refuse_mixed_runs(url: str, run: str | None, *, hint: str = MIX_HINT) -> None:
    """Raise :class:`ConfigError` (one line) if ``url`` already holds cxstream rows.

    Runs are never interleaved: the same seed gives the same ids, and rows of two
    runs in one table cannot be told apart.
    """
    tables = tables_with_rows(url)
    if not tables:
        return
    shown = make_url(url).render_as_string(hide_password=True)
    where = f"run {run} ({shown})" if run else shown
    raise ConfigError(
        f"{where} already holds cxstream rows in {', '.join(tables)}; "
        + ("choose a new run name" if run else hint)
    )


def write_records_to_sql(records: Iterable[OutputRecord], settings: Settings) -> int:
    """Upsert ``records`` (in emission order) into ``settings.sql.url``; returns the count."""
    codecs = {cls.OUTPUT_NAME: RecordCodec(cls.OUTPUT_NAME) for cls in OUTPUT_TYPES}
    pseudonymizer = Pseudonymizer.from_settings(settings.sql) if settings.sql.pseudonymise else None
    store = SqlStore(settings.sql.url, pseudonymizer=pseudonymizer)
    try:
        store.create_schema()
        batch: list[tuple[str, dict]] = []
        written = 0
        for record in records:
            codec = codecs[record.OUTPUT_NAME]
            batch.append((record.OUTPUT_NAME, codec.decode(codec.encode(record.to_dict()))))
            if len(batch) >= BATCH_SIZE:
                store.write(batch)
                written += len(batch)
                batch = []
        if batch:
            store.write(batch)
            written += len(batch)
        return written
    finally:
        store.dispose()


def write_identity_links(links: Iterable[IdentityLinkRecord], settings: Settings) -> int:
    """Upsert identity link periods (issue 16) into ``identity_links``; returns the count."""
    batch = [(link.OUTPUT_NAME, link.to_dict()) for link in links]
    if not batch:
        return 0
    pseudonymizer = Pseudonymizer.from_settings(settings.sql) if settings.sql.pseudonymise else None
    store = SqlStore(settings.sql.url, pseudonymizer=pseudonymizer)
    try:
        store.create_schema()
        for start in range(0, len(batch), BATCH_SIZE):
            store.write(batch[start : start + BATCH_SIZE])
        return len(batch)
    finally:
        store.dispose()


def write_to_sql(result: object, settings: Settings) -> int:
    """Write a :class:`pipeline.replay.ReplayResult` into SQL (its identity link
    periods too, issue 16)."""
    written = write_records_to_sql(result.records, settings)  # type: ignore[attr-defined]
    return written + write_identity_links(getattr(result, "identity_links", ()), settings)
