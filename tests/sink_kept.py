"""What the SQL sink keeps of a stream of output records, for comparing a worker's
outputs with a replay's: per output and key, the row the sink's rules keep
(:data:`pipeline.sink.models.ROW_WINS` for journeys, contacts, needs and SLA
events: by version, an open journey never over a closed one, of two customers'
records of one contact the later link's), else the last record. Records of one contact sent by two
customers (the one identity took it from and the one it gave it to, or two that
identity split it between) may arrive in either order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.sink.models import ROW_WINS

KEYS = {
    "session": "session_id",
    "contact": "contact_id",
    "need": "need_id",
    "sla_event": "sla_event_id",
    "journey_signal": "signal_id",
    "late_event": "event_id",
}
_TABLES = {
    "session": "sessions",
    "contact": "contacts",
    "need": "needs",
    "sla_event": "sla_events",
}


def sink_kept(outputs: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, dict[str, dict]]:
    """output name -> key -> the record the sink keeps (outputs: name -> records as dicts)."""
    kept: dict[str, dict[str, dict]] = {}
    for name, key in KEYS.items():
        wins = ROW_WINS.get(_TABLES.get(name, ""))
        rows: dict[str, dict] = {}
        for record in outputs.get(name, ()):
            old = rows.get(record[key])
            if old is None or wins is None or wins(record, old):
                rows[record[key]] = dict(record)
        kept[name] = rows
    return kept


def sink_kept_records(records: Iterable[Any]) -> dict[str, dict[str, dict]]:
    """:func:`sink_kept` of core output records (``OUTPUT_NAME``, ``to_dict()``)."""
    outputs: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        outputs.setdefault(record.OUTPUT_NAME, []).append(record.to_dict())
    return sink_kept(outputs)
