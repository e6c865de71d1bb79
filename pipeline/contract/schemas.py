"""The stored Avro schemas: ``schemas/<name>/v<N>.avsc``, loaded and fingerprinted once.

A schema version is identified on the wire by the CRC-64-AVRO (Rabin) fingerprint
of its Parsing Canonical Form, as the Avro single-object encoding prescribes. The
fingerprint ignores ``doc``, ``default`` and logical types, so editing a doc string
does not change the identity of a version (and does not need a new version).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from pipeline.errors import ConfigError

SCHEMAS_DIR = Path(__file__).parents[2] / "schemas"
_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One stored version of one schema.

    ``raw`` is the JSON as written (with docs and defaults; what the compatibility
    gate reads), ``schema`` the fastavro-parsed form (what the codec uses),
    ``fingerprint`` the 8-byte CRC-64-AVRO fingerprint, little-endian as on the wire.
    """

    name: str
    version: int
    raw: Any
    schema: Any
    fingerprint: bytes

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


def crc64_avro(data: bytes) -> int:
    """The CRC-64-AVRO (Rabin) fingerprint of ``data`` as an unsigned integer.

    Written out per the Avro spec so the wire format does not rest on one library's
    helper alone; the tests check it against fastavro and the spec's empty-input value.
    """
    result = _EMPTY
    for byte in data:
        result = (result >> 8) ^ _TABLE[(result ^ byte) & 0xFF]
    return result


_EMPTY = 0xC15D213AA4D7A795


def _build_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _build_table()


def schema_fingerprint(raw_schema: Any) -> bytes:
    """8-byte little-endian CRC-64-AVRO fingerprint of the schema's canonical form."""
    canonical = to_parsing_canonical_form(raw_schema)
    return crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")


def load_version_file(path: Path, name: str, version: int) -> SchemaVersion:
    """Read, parse and fingerprint one ``.avsc`` file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        # parse_schema marks its result as parsed, so fastavro skips re-parsing it
        # on every read and write call: parsing once is most of the codec's speed.
        parsed = parse_schema(raw)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"schema {path.name} of {name!r} cannot be loaded: {exc}") from exc
    return SchemaVersion(name, version, raw, parsed, schema_fingerprint(raw))


def load_versions_from(schemas_dir: Path, name: str) -> list[SchemaVersion]:
    """Every stored version of ``name`` under ``schemas_dir``, oldest first."""
    folder = schemas_dir / name
    found: list[tuple[int, Path]] = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _VERSION_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
    if not found:
        raise ConfigError(f"no schema versions for {name!r} in {folder}")
    return [load_version_file(path, name, version) for version, path in sorted(found)]


def schema_names(schemas_dir: Path = SCHEMAS_DIR) -> list[str]:
    """Names of the schemas stored under ``schemas_dir`` (folders with a v<N>.avsc)."""
    return sorted(
        p.name
        for p in schemas_dir.iterdir()
        if p.is_dir() and any(_VERSION_FILE.match(f.name) for f in p.iterdir())
    )


@cache
def load_versions(name: str) -> list[SchemaVersion]:
    """Every stored version of ``name`` in the repository's ``schemas/``; cached."""
    return load_versions_from(SCHEMAS_DIR, name)


def current(name: str) -> SchemaVersion:
    """The newest stored version of ``name``: what writers use."""
    return load_versions(name)[-1]
