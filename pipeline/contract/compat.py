"""The schema compatibility gate: FULL_TRANSITIVE over every stored version.

Every version of a schema must be able to read data written with every other
version, both ways, under the Avro specification's schema-resolution rules
("Schema Resolution"). fastavro resolves schemas at read time but has no
checker, so this module walks two schemas and lists every rule they break.
``cxstream schema check`` runs :func:`compat_command`; CI fails on exit code 1.

Logical types do not matter for resolution (only the underlying type is read),
so they are ignored here, as the spec says readers must.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.contract.schemas import SCHEMAS_DIR, SchemaVersion, load_versions_from, schema_names
from pipeline.errors import CompatibilityError, ConfigError

PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
NAMED = ("record", "enum", "fixed")

# writer type -> reader types it may be promoted to (spec, "Schema Resolution").
PROMOTIONS: Mapping[str, tuple[str, ...]] = {
    "int": ("long", "float", "double"),
    "long": ("float", "double"),
    "float": ("double",),
    "string": ("bytes",),
    "bytes": ("string",),
}


def _full_name(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def collect_names(
    schema: Any, namespace: str | None = None, into: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every named type (record, enum, fixed) in ``schema`` by full and short name."""
    names: dict[str, Any] = {} if into is None else into
    if isinstance(schema, list):
        for branch in schema:
            collect_names(branch, namespace, names)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in NAMED:
            full = _full_name(schema["name"], schema.get("namespace", namespace))
            names[full] = schema
            names.setdefault(full.rsplit(".", 1)[-1], schema)
            namespace = full.rsplit(".", 1)[0] if "." in full else namespace
        if kind == "record":
            for field in schema.get("fields", []):
                collect_names(field["type"], namespace, names)
        elif kind == "array":
            collect_names(schema["items"], namespace, names)
        elif kind == "map":
            collect_names(schema["values"], namespace, names)
        elif isinstance(kind, dict | list):
            collect_names(kind, namespace, names)
    return names


class _Checker:
    """One writer/reader pair; ``problems`` collects what breaks resolution."""

    def __init__(self, writer: Any, reader: Any) -> None:
        self.writer_names = collect_names(writer)
        self.reader_names = collect_names(reader)
        self.problems: list[str] = []
        # Recursive types (a record holding itself) would loop; a pair of named
        # types already under check is assumed fine, the usual co-inductive rule.
        self._in_progress: set[tuple[str, str]] = set()

    def _deref(self, schema: Any, names: Mapping[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            if schema not in names:
                self.problems.append(f"unknown named type {schema!r}")
                return "null"
            return names[schema]
        if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
            return self._deref(schema["type"], names)
        if isinstance(schema, dict) and isinstance(schema.get("type"), str):
            if schema["type"] in PRIMITIVES:
                return schema["type"]  # e.g. {"type": "long", "logicalType": ...}
            if schema["type"] not in (*NAMED, "array", "map"):
                return self._deref(schema["type"], names)  # {"type": "SomeRecord"}
        return schema

    @staticmethod
    def _kind(schema: Any) -> str:
        if isinstance(schema, str):
            return schema
        if isinstance(schema, list):
            return "union"
        return schema["type"]

    def matches(self, writer: Any, reader: Any, path: str) -> bool:
        """Check without recording problems (for picking a union branch)."""
        saved = self.problems
        self.problems = []
        self.check(writer, reader, path)
        ok = not self.problems
        self.problems = saved
        return ok

    def check(self, writer: Any, reader: Any, path: str) -> None:
        writer = self._deref(writer, self.writer_names)
        reader = self._deref(reader, self.reader_names)
        w_kind, r_kind = self._kind(writer), self._kind(reader)
        if w_kind == "union":
            for branch in writer:
                self.check(branch, reader, path)
            return
        if r_kind == "union":
            if not any(self.matches(writer, branch, path) for branch in reader):
                self.problems.append(
                    f"{path}: writer type {w_kind} matches no branch of the reader's union"
                )
            return
        if w_kind != r_kind:
            if r_kind not in PROMOTIONS.get(w_kind, ()):
                self.problems.append(f"{path}: writer type {w_kind} cannot be read as {r_kind}")
            return
        if w_kind in PRIMITIVES:
            return
        if w_kind == "array":
            self.check(writer["items"], reader["items"], f"{path}[]")
        elif w_kind == "map":
            self.check(writer["values"], reader["values"], f"{path}{{}}")
        elif w_kind in NAMED:
            self._check_named(writer, reader, path)
        else:
            self.problems.append(f"{path}: unknown type {w_kind!r}")

    def _check_named(self, writer: dict, reader: dict, path: str) -> None:
        w_name = writer["name"].rsplit(".", 1)[-1]
        r_name = reader["name"].rsplit(".", 1)[-1]
        aliases = {a.rsplit(".", 1)[-1] for a in reader.get("aliases", [])}
        path = path or r_name  # the top-level record names the path
        if w_name != r_name and w_name not in aliases:
            self.problems.append(f"{path}: writer {writer['type']} {w_name} is read as {r_name}")
            return
        key = (w_name, r_name)
        if key in self._in_progress:
            return
        self._in_progress.add(key)
        if writer["type"] == "fixed" and writer["size"] != reader["size"]:
            self.problems.append(
                f"{path}: fixed {w_name} size {writer['size']} is read as size {reader['size']}"
            )
        elif writer["type"] == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                self.problems.append(
                    f"{path}: enum {w_name} symbols {missing} are unknown to the reader, "
                    "which has no default symbol"
                )
        elif writer["type"] == "record":
            self._check_record(writer, reader, path)
        self._in_progress.discard(key)

    def _check_record(self, writer: dict, reader: dict, path: str) -> None:
        writer_fields = {f["name"]: f for f in writer["fields"]}
        for field in writer["fields"]:
            for alias in field.get("aliases", []):
                writer_fields.setdefault(alias, field)
        for field in reader["fields"]:
            field_path = f"{path}.{field['name']}"
            source = writer_fields.get(field["name"])
            for alias in field.get("aliases", []):
                source = source or writer_fields.get(alias)
            if "default" in field and not default_fits(
                field["type"], field["default"], self.reader_names
            ):
                self.problems.append(
                    f"{field_path}: default {field['default']!r} does not fit the field type "
                    "(for a union: its first branch)"
                )
            if source is not None:
                self.check(source["type"], field["type"], field_path)
            elif "default" not in field:
                self.problems.append(
                    f"{field_path}: field is missing in the writer and has no default"
                )


def default_fits(schema: Any, value: Any, names: Mapping[str, Any]) -> bool:
    """Whether ``value`` is a valid JSON default for ``schema`` (a union: its first branch)."""
    if isinstance(schema, str) and schema not in PRIMITIVES:
        schema = names.get(schema, schema)
    if isinstance(schema, list):
        return bool(schema) and default_fits(schema[0], value, names)
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(kind, dict | list):
        return default_fits(kind, value, names)
    checks = {
        "null": lambda v: v is None,
        "boolean": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "double": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "bytes": lambda v: isinstance(v, str),
        "string": lambda v: isinstance(v, str),
        "fixed": lambda v: isinstance(v, str) and len(v) == schema["size"],
        "enum": lambda v: v in schema["symbols"],
        "array": lambda v: (
            isinstance(v, list) and all(default_fits(schema["items"], item, names) for item in v)
        ),
        "map": lambda v: (
            isinstance(v, dict)
            and all(default_fits(schema["values"], item, names) for item in v.values())
        ),
        "record": lambda v: (
            isinstance(v, dict)
            and all(
                default_fits(f["type"], v[f["name"]], names) if f["name"] in v else "default" in f
                for f in schema["fields"]
            )
        ),
    }
    check = checks.get(kind)
    return bool(check and check(value))


def check_pair(writer: Any, reader: Any) -> list[str]:
    """Problems that stop ``reader`` from reading data written with ``writer``.

    Both are schemas as JSON (dicts/lists/strings as loaded from ``.avsc``).
    An empty list means the reader resolves every writer record.
    """
    checker = _Checker(writer, reader)
    checker.check(writer, reader, "")
    return checker.problems


def check_versions(versions: list[SchemaVersion]) -> list[str]:
    """FULL_TRANSITIVE: every version reads every other (and itself), both ways."""
    problems: list[str] = []
    for writer in versions:
        for reader in versions:
            for problem in check_pair(writer.raw, reader.raw):
                problems.append(f"v{writer.version} -> v{reader.version}: {problem}")
    return problems


def check_all(schemas_dir: Path = SCHEMAS_DIR) -> dict[str, list[str]]:
    """Problems per schema name for every schema stored under ``schemas_dir``."""
    results: dict[str, list[str]] = {}
    for name in schema_names(schemas_dir):
        try:
            results[name] = check_versions(load_versions_from(schemas_dir, name))
        except ConfigError as exc:
            results[name] = [str(exc)]
    return results


def require_compatible(schemas_dir: Path = SCHEMAS_DIR) -> None:
    """Raise :class:`CompatibilityError` naming the first broken schema, if any."""
    for name, problems in check_all(schemas_dir).items():
        if problems:
            raise CompatibilityError(f"{name}: {problems[0]}")


def compat_command(schemas_dir: str | Path | None = None) -> int:
    """``cxstream schema check``: one line per schema, then its problems; 1 if any.

    ``schemas_dir`` defaults to the repository's ``schemas/``.
    """
    folder = SCHEMAS_DIR if schemas_dir is None else Path(schemas_dir)
    failed = False
    for name, problems in check_all(folder).items():
        count = len(list((folder / name).glob("v*.avsc")))
        versions = f"{count} version{'s' if count != 1 else ''}"
        if problems:
            failed = True
            print(f"{name}: INCOMPATIBLE ({versions}, {len(problems)} problems)")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"{name}: ok ({versions}, FULL_TRANSITIVE)")
    return 1 if failed else 0
