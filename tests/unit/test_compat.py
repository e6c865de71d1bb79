import copy
import json

from pipeline.contract.compat import (
    check_all,
    check_pair,
    compat_command,
)
from pipeline.contract.schemas import SCHEMAS_DIR, load_versions

EVENT_V1 = load_versions("interaction_event")[0].raw


def _with_field(schema: dict, field: dict) -> dict:
    changed = copy.deepcopy(schema)
    changed["fields"].append(field)
    return changed


def _record(*fields: dict, name: str = "R") -> dict:
    return {"type": "record", "name": name, "fields": list(fields)}


def test_adding_a_field_without_default_breaks_reading_old_data():
    v2 = _with_field(EVENT_V1, {"name": "language", "type": "string"})
    assert check_pair(EVENT_V1, v2) == [
        "InteractionEvent.language: field is missing in the writer and has no default"
    ]


def test_adding_a_field_with_default_is_compatible_both_ways():
    v2 = _with_field(EVENT_V1, {"name": "language", "type": ["null", "string"], "default": None})
    assert check_pair(EVENT_V1, v2) == []
    assert check_pair(v2, EVENT_V1) == []


def test_removing_a_field_without_default_breaks_old_readers():
    writer = _record({"name": "a", "type": "string"})
    reader = _record({"name": "a", "type": "string"}, {"name": "b", "type": "int"})
    assert check_pair(writer, reader) == ["R.b: field is missing in the writer and has no default"]


def test_removing_an_enum_symbol_without_reader_default_fails():
    old = _record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b"]}})
    new = _record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a"]}})
    assert check_pair(old, new) == [
        "R.e: enum E symbols ['b'] are unknown to the reader, which has no default symbol"
    ]
    assert check_pair(new, old) == []


def test_removing_an_enum_symbol_with_reader_default_passes():
    old = _record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b"]}})
    new = _record(
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a"], "default": "a"}}
    )
    assert check_pair(old, new) == []


def test_int_promotes_to_long_but_long_does_not_narrow_to_int():
    ints = _record({"name": "n", "type": "int"})
    longs = _record({"name": "n", "type": "long"})
    assert check_pair(ints, longs) == []
    assert check_pair(longs, ints) == ["R.n: writer type long cannot be read as int"]


def test_union_reader_accepts_a_writer_branch_and_rejects_a_foreign_type():
    writer = _record({"name": "x", "type": "string"})
    assert check_pair(writer, _record({"name": "x", "type": ["null", "string"]})) == []
    assert check_pair(writer, _record({"name": "x", "type": ["null", "int"]})) == [
        "R.x: writer type string matches no branch of the reader's union"
    ]


def test_writer_union_with_a_branch_the_reader_lacks_fails():
    writer = _record({"name": "x", "type": ["null", "string"]})
    reader = _record({"name": "x", "type": "string"})
    assert check_pair(writer, reader) == ["R.x: writer type null cannot be read as string"]


def test_arrays_maps_and_fixed_are_checked_inside():
    writer = _record(
        {"name": "xs", "type": {"type": "array", "items": "int"}},
        {"name": "m", "type": {"type": "map", "values": "string"}},
        {"name": "f", "type": {"type": "fixed", "name": "F", "size": 4}},
    )
    reader = _record(
        {"name": "xs", "type": {"type": "array", "items": "string"}},
        {"name": "m", "type": {"type": "map", "values": "bytes"}},
        {"name": "f", "type": {"type": "fixed", "name": "F", "size": 8}},
    )
    assert check_pair(writer, reader) == [
        "R.xs[]: writer type int cannot be read as string",
        "R.f: fixed F size 4 is read as size 8",
    ]


def test_named_type_reference_resolves_to_its_definition():
    enum = {"type": "enum", "name": "E", "symbols": ["a", "b"]}
    writer = _record({"name": "one", "type": enum}, {"name": "two", "type": "E"})
    reader = _record(
        {"name": "one", "type": {**enum, "symbols": ["a", "b"]}},
        {"name": "two", "type": "E"},
    )
    assert check_pair(writer, reader) == []
    narrowed = _record(
        {"name": "one", "type": {**enum, "symbols": ["a", "b", "c"]}},
        {"name": "two", "type": "E"},
    )
    assert check_pair(narrowed, reader) == [
        "R.one: enum E symbols ['c'] are unknown to the reader, which has no default symbol",
        "R.two: enum E symbols ['c'] are unknown to the reader, which has no default symbol",
    ]


def test_renamed_record_is_incompatible_unless_aliased():
    writer = _record({"name": "a", "type": "int"}, name="Old")
    reader = _record({"name": "a", "type": "int"}, name="New")
    assert check_pair(writer, reader) == ["New: writer record Old is read as New"]
    assert check_pair(writer, {**reader, "aliases": ["Old"]}) == []


def test_default_that_does_not_fit_the_first_union_branch_is_reported():
    writer = _record({"name": "a", "type": "int"})
    reader = _record(
        {"name": "a", "type": "int"}, {"name": "b", "type": ["null", "string"], "default": "x"}
    )
    assert check_pair(writer, reader) == [
        "R.b: default 'x' does not fit the field type (for a union: its first branch)"
    ]


def test_the_stored_schemas_pass_the_gate():
    assert check_all(SCHEMAS_DIR) == {
        "contact": [],
        "identity_link": [],
        "interaction_event": [],
        "journey_signal": [],
        "late_event": [],
        "need": [],
        "session": [],
        "sla_event": [],
    }


def test_compat_command_prints_problems_and_exits_1_for_a_breaking_version(tmp_path, capsys):
    folder = tmp_path / "interaction_event"
    folder.mkdir()
    (folder / "v1.avsc").write_text(json.dumps(EVENT_V1), encoding="utf-8")
    v2 = _with_field(EVENT_V1, {"name": "language", "type": "string"})
    (folder / "v2.avsc").write_text(json.dumps(v2), encoding="utf-8")
    assert compat_command(tmp_path) == 1
    assert capsys.readouterr().out.splitlines() == [
        "interaction_event: INCOMPATIBLE (2 versions, 1 problems)",
        "  v1 -> v2: InteractionEvent.language: field is missing in the writer and has no default",
    ]


def test_compat_command_exits_0_for_the_stored_schemas_by_default(capsys):
    assert compat_command(None) == 0
    assert "interaction_event: ok (3 versions, FULL_TRANSITIVE)" in capsys.readouterr().out
