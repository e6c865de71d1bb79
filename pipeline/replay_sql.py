"""Write a replay's output records into SQL, exactly as the streaming sink would.

The records go through the same Avro output codecs the worker uses on the way to
Kafka and the sink uses on the way back, so the store receives identically
shaped dicts from both paths and the tables compare row by row.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.contract.codec import RecordCodec
from pipeline.core.records import OUTPUT_TYPES, OutputRecord
from pipeline.settings import Settings
from pipeline.sink.pseudonym import Pseudonymizer
from pipeline.sink.store import SqlStore

BATCH_SIZE = 1000


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


def write_to_sql(result: object, settings: Settings) -> int:
    """Write a :class:`pipeline.replay.ReplayResult` into SQL."""
    return write_records_to_sql(result.records, settings)  # type: ignore[attr-defined]
