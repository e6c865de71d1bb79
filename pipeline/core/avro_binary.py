"""Avro binary encoding specialised to one writer schema (compiled with mypyc).

fastavro walks the parsed schema on every call and dispatches on type names per
field; on the worker's 20-30 field records that was ~20 us per output record and
~13 us per input event (issue 14). Here a writer schema is turned once into a
tree of :class:`Node` (an int opcode per type, the enum symbols, the branch
index of ``null`` in a ``["null", X]`` union), and :func:`encode_into` /
:func:`decode` walk that tree: under mypyc each step is a C switch on an int.

Scope: the types cxstream's schemas use: ``null``, ``boolean``, ``int``,
``long``, ``double``, ``string``, ``bytes``, enums, arrays, maps, records, named
type references and two-branch unions with ``null``. Any other schema raises
:class:`UnsupportedSchema` when the program is built, and the codec keeps
fastavro for it. Logical types are read as their underlying type (cxstream keeps
times as epoch milliseconds).

Encoding is byte-identical to ``fastavro.schemaless_writer`` for every record
that fits the schema, and stricter where fastavro is lax outside unions: an
``int`` must be an int in the 32-bit range (fastavro writes 2**31 and truncates
1.5), a ``boolean`` a bool (fastavro writes any object's truthiness), a
``string`` a str, a ``double`` an int or float (not a str or bool). A record that
does not fit raises TypeError or ValueError. A field missing from the record
takes its schema default, as in fastavro.

Decoding raises :class:`AvroDecodeError` (and nothing else) on bad bytes: a short
read, a varint over 64 bits, a negative length or block size, an ``int`` outside
32 bits, a union branch or enum index outside the schema's (fastavro reads a
negative index as one counted from the end: see pipeline/contract/avro_enums.py),
invalid UTF-8. Enums decode to their symbol.

Pure: no I/O, no fastavro; ``struct`` for IEEE 754 doubles.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final, final

OP_NULL: Final = 0
OP_BOOLEAN: Final = 1
OP_INT: Final = 2
OP_LONG: Final = 3
OP_DOUBLE: Final = 4
OP_STRING: Final = 5
OP_BYTES: Final = 6
OP_ENUM: Final = 7
OP_ARRAY: Final = 8
OP_MAP: Final = 9
OP_RECORD: Final = 10
#: A two-branch union of ``null`` and one other type (``Node.item``).
OP_NULLABLE: Final = 11

_PRIMITIVES: Final = {
    "null": OP_NULL,
    "boolean": OP_BOOLEAN,
    "int": OP_INT,
    "long": OP_LONG,
    "double": OP_DOUBLE,
    "string": OP_STRING,
    "bytes": OP_BYTES,
}

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1

_DOUBLE = struct.Struct("<d")
# Varints of 0..127 are one byte; most lengths, counts and small ints are.
_ONE_BYTE: Final = tuple(bytes((n,)) for n in range(128))


class UnsupportedSchema(ValueError):
    """The schema uses a type this encoder does not implement (the codec keeps fastavro)."""


class AvroDecodeError(ValueError):
    """The bytes are not a record of the schema.

    ``field`` names the enum field when the error is an enum index outside its symbols.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@final
class Node:
    """One type of the schema: ``op`` and what that type needs to be walked."""

    def __init__(self, op: int, name: str = "") -> None:
        self.op = op
        #: The field name when this node is a record field, else "".
        self.name = name
        self.symbols: list[str] = []
        self.symbol_index: dict[str, int] = {}
        #: Items of an array, values of a map, the non-null branch of a union.
        self.item: Node | None = None
        #: A record's fields, in schema order.
        self.fields: list[Node] = []
        self.names: list[str] = []
        #: Union branch index of ``null`` (0 or 1) and of the other branch.
        self.null_index = 0
        self.value_index = 1
        #: The field's schema default (fastavro writes it for a missing key).
        self.has_default = False
        self.default: Any = None
        #: A ``["null", X]`` field, or a field with a default: may be absent.
        self.optional = False


def _unsupported(what: str) -> UnsupportedSchema:
    return UnsupportedSchema(f"avro_binary: {what} is not supported")


def _full_name(schema: Mapping[str, Any], namespace: str) -> str:
    name = str(schema["name"])
    space = str(schema.get("namespace", namespace) or "")
    return name if "." in name or not space else f"{space}.{name}"


def _node(schema: Any, named: dict[str, Node], namespace: str) -> Node:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return Node(_PRIMITIVES[schema])
        qualified = f"{namespace}.{schema}" if namespace and "." not in schema else schema
        for key in (qualified, schema):
            if key in named:
                return named[key]
        raise _unsupported(f"type {schema!r} (not defined before use)")
    if isinstance(schema, list):
        branches = [_node(branch, named, namespace) for branch in schema]
        ops = [branch.op for branch in branches]
        if len(branches) != 2 or ops.count(OP_NULL) != 1:
            raise _unsupported(f"union {schema!r} (only two branches, one null)")
        node = Node(OP_NULLABLE)
        node.null_index = ops.index(OP_NULL)
        node.value_index = 1 - node.null_index
        node.item = branches[node.value_index]
        return node
    if not isinstance(schema, dict):
        raise _unsupported(f"schema {schema!r}")
    kind = schema.get("type")
    if kind in _PRIMITIVES:
        return Node(_PRIMITIVES[str(kind)])  # logicalType: the underlying type
    if kind == "enum":
        node = Node(OP_ENUM)
        node.symbols = [str(symbol) for symbol in schema["symbols"]]
        node.symbol_index = {symbol: index for index, symbol in enumerate(node.symbols)}
        _register(schema, node, named, namespace)
        return node
    if kind == "array":
        node = Node(OP_ARRAY)
        node.item = _node(schema["items"], named, namespace)
        return node
    if kind == "map":
        node = Node(OP_MAP)
        node.item = _node(schema["values"], named, namespace)
        return node
    if kind == "record":
        node = Node(OP_RECORD)
        full = _register(schema, node, named, namespace)  # before the fields: recursion
        inner = full.rpartition(".")[0]
        for field in schema["fields"]:
            built = _node(field["type"], named, inner)
            member = _named_copy(built, str(field["name"]))
            if built.op == OP_NULLABLE and built.item is not None:
                # So that a bad enum index in ["null", enum] names the field.
                member.item = _named_copy(built.item, member.name)
            member.has_default = "default" in field
            member.default = field.get("default")
            member.optional = member.has_default or built.op == OP_NULLABLE
            node.fields.append(member)
            node.names.append(member.name)
        return node
    raise _unsupported(f"type {kind!r}")


def _named_copy(source: Node, name: str) -> Node:
    """A node that walks like ``source`` and carries a field name (for errors and lookups)."""
    target = Node(source.op, name)
    target.symbols = source.symbols
    target.symbol_index = source.symbol_index
    target.item = source.item
    target.fields = source.fields
    target.null_index = source.null_index
    target.value_index = source.value_index
    target.names = source.names
    return target


def _register(schema: Mapping[str, Any], node: Node, named: dict[str, Node], namespace: str) -> str:
    full = _full_name(schema, namespace)
    named[full] = node
    named.setdefault(str(schema["name"]).rpartition(".")[2], node)
    return full


def build_program(schema: Mapping[str, Any]) -> Node:
    """The walkable program of a parsed record schema (the JSON of a ``.avsc`` file).

    Raises :class:`UnsupportedSchema` for what this module does not implement.
    """
    if schema.get("type") != "record":
        raise _unsupported("a top-level type other than a record")
    return _node(dict(schema), {}, str(schema.get("namespace") or ""))


def field_names(program: Node) -> list[str]:
    """The top-level field names, in schema (and :func:`decode`) order."""
    return list(program.names)


# --- encoding -------------------------------------------------------------------


def _write_long(value: int, out: bytearray) -> None:
    zigzag = (value << 1) ^ (value >> 63)
    if zigzag < 128:
        out += _ONE_BYTE[zigzag]
        return
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)


def _write_str(value: object, out: bytearray) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    data = value.encode("utf-8")
    _write_long(len(data), out)
    out += data


def _write(node: Node, value: object, out: bytearray) -> None:
    op = node.op
    if op == OP_STRING:
        _write_str(value, out)
    elif op == OP_NULLABLE:
        if value is None:
            out += _ONE_BYTE[node.null_index << 1]
        else:
            out += _ONE_BYTE[node.value_index << 1]
            item = node.item
            assert item is not None
            _write(item, value, out)
    elif op in (OP_LONG, OP_INT):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"expected an int, got {type(value).__name__}")
        if op == OP_INT:
            if not INT_MIN <= value <= INT_MAX:
                raise ValueError(f"{value} is outside the 32-bit int range")
        elif not LONG_MIN <= value <= LONG_MAX:
            raise ValueError(f"{value} is outside the 64-bit long range")
        _write_long(value, out)
    elif op == OP_BOOLEAN:
        if value is True:
            out += b"\x01"
        elif value is False:
            out += b"\x00"
        else:
            raise TypeError(f"expected a bool, got {type(value).__name__}")
    elif op == OP_DOUBLE:
        if isinstance(value, float):
            out += _DOUBLE.pack(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            out += _DOUBLE.pack(float(value))  # OverflowError past 1.8e308, as fastavro
        else:
            raise TypeError(f"expected a float, got {type(value).__name__}")
    elif op == OP_ENUM:
        if not isinstance(value, str) or value not in node.symbol_index:
            raise ValueError(f"{value!r} is not one of the symbols {node.symbols}")
        _write_long(node.symbol_index[value], out)
    elif op == OP_RECORD:
        if not isinstance(value, (dict, Mapping)):  # a dict first: no ABC check
            raise TypeError(f"expected a mapping for a record, got {type(value).__name__}")
        encode_into(node, value, out)
    elif op == OP_ARRAY:
        item = node.item
        assert item is not None
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        if len(value) > 0:
            _write_long(len(value), out)
            for element in value:
                _write(item, element, out)
        out += b"\x00"
    elif op == OP_MAP:
        item = node.item
        assert item is not None
        if not isinstance(value, (dict, Mapping)):  # a dict first: no ABC check
            raise TypeError(f"expected a mapping, got {type(value).__name__}")
        if len(value) > 0:
            _write_long(len(value), out)
            for key, element in value.items():
                _write_str(key, out)
                _write(item, element, out)
        out += b"\x00"
    elif op == OP_BYTES:
        if not isinstance(value, bytes):
            raise TypeError(f"expected bytes, got {type(value).__name__}")
        _write_long(len(value), out)
        out += value
    elif op == OP_NULL:
        if value is not None:
            raise TypeError(f"expected None, got {type(value).__name__}")
    else:  # pragma: no cover - build_program makes no other op
        raise ValueError(f"avro_binary: unknown op {op}")


_ABSENT: Final = object()


def _naming(name: str, exc: Exception) -> Exception:
    """``exc`` as a TypeError or ValueError whose message starts with the field name.

    Not ``type(exc)(...)``: UnicodeEncodeError (a lone surrogate) takes five arguments.
    """
    kind = TypeError if isinstance(exc, TypeError) else ValueError
    return kind(f"{name}: {exc}")


def encode_into(program: Node, record: Mapping[str, Any], out: bytearray) -> None:
    """Append the Avro binary encoding of ``record`` to ``out``.

    Raises TypeError or ValueError (naming the field) for a record that does not
    fit; ``out`` then holds a partial encoding.
    """
    # A dict (what to_dict() gives) is read with one typed lookup per field.
    as_dict: dict[str, Any] | None = record if isinstance(record, dict) else None
    for field in program.fields:
        if as_dict is not None:
            value = as_dict.get(field.name, _ABSENT)
        else:
            value = record.get(field.name, _ABSENT)
        if value is _ABSENT:
            if not field.optional:
                raise ValueError(f"{field.name}: no value and no default")
            value = field.default
        try:
            _write(field, value, out)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _naming(field.name, exc) from None


def encode_object(program: Node, record: object, out: bytearray) -> None:
    """Like :func:`encode_into`, reading each top-level field as an attribute of ``record``.

    An attribute the object lacks takes the field's default, as a missing key does.
    """
    for field in program.fields:
        value = getattr(record, field.name, _ABSENT)
        if value is _ABSENT:
            if not field.optional:
                raise ValueError(f"{field.name}: no value and no default")
            value = field.default
        try:
            _write(field, value, out)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _naming(field.name, exc) from None


def encode(program: Node, record: Mapping[str, Any]) -> bytes:
    """The Avro binary encoding of ``record`` (the body fastavro's schemaless_writer writes)."""
    out = bytearray()
    encode_into(program, record, out)
    return bytes(out)


# --- decoding -------------------------------------------------------------------


@final
class _Cursor:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)


def _short(what: str) -> AvroDecodeError:
    return AvroDecodeError(f"short read: the bytes end inside {what}")


def _read_long(cursor: _Cursor) -> int:
    data = cursor.data
    pos = cursor.pos
    end = cursor.end
    if pos >= end:
        raise _short("a varint")
    byte = data[pos]
    pos += 1
    if byte < 0x80:  # the common one-byte case
        cursor.pos = pos
        return (byte >> 1) ^ -(byte & 1)
    value = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if pos >= end:
            raise _short("a varint")
        if shift > 63:
            raise AvroDecodeError("varint longer than 10 bytes")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
    if value >> 64:
        raise AvroDecodeError("varint exceeds 64 bits")
    cursor.pos = pos
    return (value >> 1) ^ -(value & 1)


def _read_length(cursor: _Cursor, what: str) -> int:
    length = _read_long(cursor)
    if length < 0:
        raise AvroDecodeError(f"negative {what} length {length}")
    if length > cursor.end - cursor.pos:
        raise _short(what)
    return length


def _read_str(cursor: _Cursor) -> str:
    length = _read_length(cursor, "string")
    pos = cursor.pos
    cursor.pos = pos + length
    try:
        return cursor.data[pos : pos + length].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AvroDecodeError(f"string is not UTF-8: {exc.reason}") from None


def _block_count(cursor: _Cursor, what: str) -> int:
    """Items in the next block (0 at the end); a negative count is followed by a byte size."""
    count = _read_long(cursor)
    if count < 0:
        count = -count
        _read_length(cursor, f"{what} block")  # the byte size; items are read one by one
    if count > cursor.end - cursor.pos:
        # Every item of cxstream's schemas takes at least one byte: a count beyond
        # the bytes left cannot be honest, and reading it item by item would spin.
        raise _short(f"{what} of {count} items")
    return count


def _read(node: Node, cursor: _Cursor) -> Any:
    op = node.op
    if op == OP_STRING:
        return _read_str(cursor)
    if op == OP_NULLABLE:
        index = _read_long(cursor)
        if index == node.null_index:
            return None
        if index != node.value_index:
            raise AvroDecodeError(
                f"{node.name or 'union'}: union branch index {index}, outside 0..1"
            )
        item = node.item
        assert item is not None
        return _read(item, cursor)
    if op == OP_LONG:
        return _read_long(cursor)
    if op == OP_INT:
        integer = _read_long(cursor)
        if not INT_MIN <= integer <= INT_MAX:
            raise AvroDecodeError(f"int {integer} is outside 32 bits")
        return integer
    if op == OP_BOOLEAN:
        pos = cursor.pos
        if pos >= cursor.end:
            raise _short("a boolean")
        byte = cursor.data[pos]
        cursor.pos = pos + 1
        if byte > 1:
            raise AvroDecodeError(f"boolean byte {byte}, not 0 or 1")
        return byte == 1
    if op == OP_DOUBLE:
        pos = cursor.pos
        if pos + 8 > cursor.end:
            raise _short("a double")
        cursor.pos = pos + 8
        number: float = _DOUBLE.unpack_from(cursor.data, pos)[0]
        return number
    if op == OP_ENUM:
        index = _read_long(cursor)
        if not 0 <= index < len(node.symbols):
            raise AvroDecodeError(
                f"{node.name} has enum index {index}, outside 0..{len(node.symbols) - 1}",
                node.name or None,
            )
        return node.symbols[index]
    if op == OP_RECORD:
        return dict(zip(node.names, _read_fields(node, cursor), strict=True))
    if op == OP_ARRAY:
        item = node.item
        assert item is not None
        items: list[Any] = []
        count = _block_count(cursor, "array")
        while count:
            for _ in range(count):
                items.append(_read(item, cursor))
            count = _block_count(cursor, "array")
        return items
    if op == OP_MAP:
        item = node.item
        assert item is not None
        mapping: dict[str, Any] = {}
        count = _block_count(cursor, "map")
        while count:
            for _ in range(count):
                key = _read_str(cursor)
                mapping[key] = _read(item, cursor)
            count = _block_count(cursor, "map")
        return mapping
    if op == OP_BYTES:
        length = _read_length(cursor, "bytes")
        pos = cursor.pos
        cursor.pos = pos + length
        return cursor.data[pos : pos + length]
    if op == OP_NULL:
        return None
    raise AvroDecodeError(f"avro_binary: unknown op {op}")  # pragma: no cover


def _read_fields(program: Node, cursor: _Cursor) -> list[Any]:
    return [_read(field, cursor) for field in program.fields]


def decode(program: Node, data: bytes, start: int = 0) -> tuple[list[Any], int]:
    """The top-level field values of the record at ``data[start:]`` and where it ends.

    Values come in schema order (:func:`field_names`); nested records are dicts.
    The caller decides about bytes after the end. Raises :class:`AvroDecodeError`.
    """
    cursor = _Cursor(data, start)
    values = _read_fields(program, cursor)
    return values, cursor.pos
