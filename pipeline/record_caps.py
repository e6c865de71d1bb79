"""Size caps on what the worker sends: a late-event record cut to fit.

Every record the worker sends stays within ``limits.max_record_bytes`` (key,
value and headers, :func:`pipeline.dlq.record_size`): one record too large for
the broker fails its whole send and stopped the worker, again after every
restart (issue 12). Dead letters are cut by :func:`pipeline.dlq.build_dead_letter`;
a late-event record, which carries the whole late input event, is cut here. Pure:
no faust, no kafka.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.core.records import LateEvent
from pipeline.dlq import record_size

#: Header on an output record whose named payload field was cut to fit the cap.
TRUNCATED_HEADER = "cx.truncated"
#: The one key of a late event's ``event`` payload once it was cut.
TRUNCATED_MARKER = "cx_truncated"
# Room for the Avro length prefixes, which grow by a few bytes with the prefix.
_SLACK = 16


def cap_late_event(
    record: LateEvent,
    encode: Callable[[Mapping[str, Any]], bytes],
    key: bytes,
    max_bytes: int,
) -> tuple[bytes, list[tuple[str, bytes]]] | None:
    """``record`` encoded with its ``event`` payload cut to fit ``max_bytes``, and its headers.

    The payload becomes ``{"cx_truncated": {"sha256", "bytes", "prefix"}}``: the
    digest and size of the whole event's JSON text and as much of that text as
    fits. It stays a JSON object, so every reader of the late-event topic still
    decodes it. None when not even the cut record fits (its other fields are
    too large).
    """
    text = json.dumps(record.event, sort_keys=True, separators=(",", ":"))
    marker: dict[str, Any] = {
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "bytes": len(text),
        "prefix": "",
    }
    headers = [(TRUNCATED_HEADER, b"event")]
    fields = {**record.to_dict(), "event": {TRUNCATED_MARKER: marker}}
    room = max_bytes - record_size(key, encode(fields), headers) - _SLACK
    if room < 0:
        return None
    # ``text`` is ASCII (json.dumps escapes everything else); encoded once more
    # inside the marker, each character takes at most two bytes (\" or \\).
    marker["prefix"] = text[: room // 2]
    value = encode(fields)
    if record_size(key, value, headers) > max_bytes:
        return None
    return value, headers
