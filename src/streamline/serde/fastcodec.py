"""Avro binary readers and writers generated as straight-line Python for one schema.

fastavro interprets the schema for every record: it looks at each field's type, calls
a reader per value and reads through a file object. For the records a topology reads
and writes (records of primitives, enums, nullable unions, arrays and maps) a function
written for the schema does the same work in about half the time.

The generated functions are strict: anything they are not sure of (a value of another
type, a number out of range, a union that is not a nullable one, bytes that end early,
an unknown enum symbol) raises, and the codec then does the same record through fastavro,
which gives the answer or the error message it always gave. They never return
something fastavro would not. Schemas with recursive types, or arrays and maps of items
that take no bytes, get no generated function at all.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]
Writer = Callable[[Any], bytes]
BatchReader = Callable[[list[Any], Callable[[Any], bool]], list[Any]]
BatchWriter = Callable[[list[Any], Callable[[Any], bytes | None]], list[tuple[Any, bytes]]]

LONG_MIN = -(1 << 63)
LONG_MAX = (1 << 63) - 1
INT_MIN = -(1 << 31)
INT_MAX = (1 << 31) - 1

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class Unsupported(Exception):
    """The schema has something the generator does not handle; fastavro does it all."""


def _read_long(buf: bytes, pos: int, b: int) -> tuple[int, int]:
    """The rest of a varint whose first byte `b` (at pos - 1) had the continuation bit."""
    acc = b & 0x7F
    shift = 7
    while True:
        b = buf[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
    value = (acc >> 1) ^ -(acc & 1)
    if not LONG_MIN <= value <= LONG_MAX:
        raise ValueError("long out of range")
    return value, pos


def _read_length(buf: bytes, pos: int, b: int) -> tuple[int, int]:
    """A length whose first byte did not fit the one-byte case; negative lengths raise."""
    if b < 0x80:
        raise ValueError("negative length")
    n, pos = _read_long(buf, pos, b)
    if n < 0:
        raise ValueError("negative length")
    return n, pos


def _write_long(out: bytearray, value: int) -> None:
    """Appends the zigzag varint of an in-range long."""
    z = (value << 1) ^ (value >> 63)
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)


_HELPERS: dict[str, Any] = {
    "_read_long": _read_long,
    "_read_length": _read_length,
    "_write_long": _write_long,
    "_unpack_f": struct.Struct("<f").unpack_from,
    "_unpack_d": struct.Struct("<d").unpack_from,
    "_pack_f": struct.Struct("<f").pack,
    "_pack_d": struct.Struct("<d").pack,
    "LONG_MIN": LONG_MIN,
    "LONG_MAX": LONG_MAX,
    "INT_MIN": INT_MIN,
    "INT_MAX": INT_MAX,
}


class _Source:
    """Lines of Python being generated, with fresh local names and module constants."""

    def __init__(self, parsed: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = parsed.get("__named_schemas", {})
        self.constants: dict[str, Any] = {}
        self.counter = 0
        self.stack: list[str] = []  # named types being generated (to refuse recursion)

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def local(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any) -> str:
        name = f"K{len(self.constants)}"
        self.constants[name] = value
        return name

    def resolve(self, schema: Any) -> Any:
        """The schema a type refers to: named references looked up, lists kept as unions."""
        if isinstance(schema, str) and schema not in PRIMITIVES:
            try:
                return self.names[schema]
            except KeyError:
                raise Unsupported(f"unknown named type {schema}") from None
        if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
            return schema["type"]
        return schema

    def named(self, schema: dict[str, Any]) -> Any:
        """Context for generating a named type; refuses a type that contains itself."""
        name = schema.get("name", "")
        if name in self.stack:
            raise Unsupported(f"recursive type {name}")
        return _Named(self.stack, name)

    def compile(self, function: str, schema_name: str) -> Any:
        """The generated `function`; tracebacks and profiles name it `<avro SCHEMA function>`."""
        namespace: dict[str, Any] = {**_HELPERS, **self.constants}
        filename = f"<avro {schema_name} {function}>"
        exec(compile("\n".join(self.lines), filename, "exec"), namespace)
        return namespace[function]


class _Named:
    def __init__(self, stack: list[str], name: str) -> None:
        self.stack = stack
        self.name = name

    def __enter__(self) -> None:
        self.stack.append(self.name)

    def __exit__(self, *exc: object) -> None:
        self.stack.pop()


def _min_size(src: _Source, schema: Any, seen: frozenset[str] = frozenset()) -> int:
    """The fewest bytes a value of `schema` takes (0 for null, empty records and fixed(0))."""
    schema = src.resolve(schema)
    if schema == "null":
        return 0
    if isinstance(schema, str):
        return {"float": 4, "double": 8}.get(schema, 1)
    if isinstance(schema, list):
        return 1
    kind = schema["type"]
    if kind == "fixed":
        return int(schema["size"])
    if kind in ("record", "error"):
        if schema["name"] in seen:
            return 1
        return sum(_min_size(src, f["type"], seen | {schema["name"]}) for f in schema["fields"])
    return 1


# --- readers ---------------------------------------------------------------------------


def _read_varint(src: _Source, ind: int, target: str, wide: bool = False) -> None:
    """Reads a zigzag varint; `wide` ones (int and long values) loop in line, not in a call."""
    b = src.local("b")
    src.emit(ind, f"{b} = buf[pos]")
    src.emit(ind, "pos += 1")
    src.emit(ind, f"if {b} < 0x80:")
    src.emit(ind + 1, f"{target} = ({b} >> 1) ^ -({b} & 1)")
    src.emit(ind, "else:")
    if not wide:
        src.emit(ind + 1, f"{target}, pos = _read_long(buf, pos, {b})")
        return
    acc, shift = src.local("acc"), src.local("shift")
    src.emit(ind + 1, f"{acc} = {b} & 0x7F")
    src.emit(ind + 1, f"{shift} = 7")
    src.emit(ind + 1, "while True:")
    src.emit(ind + 2, f"{b} = buf[pos]")
    src.emit(ind + 2, "pos += 1")
    src.emit(ind + 2, f"{acc} |= ({b} & 0x7F) << {shift}")
    src.emit(ind + 2, f"if {b} < 0x80:")
    src.emit(ind + 3, "break")
    src.emit(ind + 2, f"{shift} += 7")
    src.emit(ind + 2, f"if {shift} > 63:")
    src.emit(ind + 3, "raise ValueError('varint longer than 10 bytes')")
    src.emit(ind + 1, f"{target} = ({acc} >> 1) ^ -({acc} & 1)")
    src.emit(ind + 1, f"if not LONG_MIN <= {target} <= LONG_MAX:")
    src.emit(ind + 2, "raise ValueError('long out of range')")


def _read_value(src: _Source, schema: Any, ind: int, target: str) -> None:
    """Emits code that reads one value of `schema` at `pos` into the local `target`."""
    schema = src.resolve(schema)
    if schema == "null":
        src.emit(ind, f"{target} = None")
    elif schema == "boolean":
        b = src.local("b")
        src.emit(ind, f"{b} = buf[pos]")
        src.emit(ind, "pos += 1")
        src.emit(ind, f"if {b} > 1:")
        src.emit(ind + 1, "raise ValueError('boolean')")
        src.emit(ind, f"{target} = {b} == 1")
    elif schema in ("int", "long"):
        _read_varint(src, ind, target, wide=True)
        if schema == "int":
            src.emit(ind, f"if not INT_MIN <= {target} <= INT_MAX:")
            src.emit(ind + 1, "raise ValueError('int out of range')")
    elif schema == "float":
        src.emit(ind, f"{target} = _unpack_f(buf, pos)[0]")
        src.emit(ind, "pos += 4")
    elif schema == "double":
        src.emit(ind, f"{target} = _unpack_d(buf, pos)[0]")
        src.emit(ind, "pos += 8")
    elif schema in ("bytes", "string"):
        # A length past the end gives a short slice, and pos ends up past the end, which
        # the caller refuses; a negative one would move pos back, so it raises.
        n = src.local("n")
        src.emit(ind, f"{n} = buf[pos]")
        src.emit(ind, "pos += 1")
        src.emit(ind, f"if {n} < 0x80 and not {n} & 1:")
        src.emit(ind + 1, f"{n} >>= 1")
        src.emit(ind, "else:")
        src.emit(ind + 1, f"{n}, pos = _read_length(buf, pos, {n})")
        decode = ".decode()" if schema == "string" else ""
        src.emit(ind, f"{target} = buf[pos:pos + {n}]{decode}")
        src.emit(ind, f"pos += {n}")
    elif isinstance(schema, list):
        _read_union(src, schema, ind, target)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "error"):
            with src.named(schema):
                _read_record(src, schema, ind, target)
        elif kind == "enum":
            symbols = src.constant(tuple(schema["symbols"]))
            i = src.local("i")
            _read_varint(src, ind, i)
            src.emit(ind, f"if {i} < 0:")
            src.emit(ind + 1, "raise ValueError('enum index')")
            src.emit(ind, f"{target} = {symbols}[{i}]")
        elif kind == "fixed":
            size = int(schema["size"])
            src.emit(ind, f"if pos + {size} > size:")
            src.emit(ind + 1, "raise ValueError('fixed')")
            src.emit(ind, f"{target} = buf[pos:pos + {size}]")
            src.emit(ind, f"pos += {size}")
        elif kind in ("array", "map"):
            _read_blocks(src, schema, ind, target)
        else:
            raise Unsupported(f"type {kind}")
    else:
        raise Unsupported(f"type {schema!r}")


def _read_record(src: _Source, schema: dict[str, Any], ind: int, target: str) -> None:
    items = []
    for field in schema["fields"]:
        local = src.local()
        _read_value(src, field["type"], ind, local)
        items.append(f"{field['name']!r}: {local}")
    src.emit(ind, f"{target} = {{{', '.join(items)}}}")


def _read_union(src: _Source, branches: list[Any], ind: int, target: str) -> None:
    i = src.local("i")
    _read_varint(src, ind, i)
    for n, branch in enumerate(branches):
        src.emit(ind, f"{'if' if n == 0 else 'elif'} {i} == {n}:")
        _read_value(src, branch, ind + 1, target)
    src.emit(ind, "else:")
    src.emit(ind + 1, "raise ValueError('union index')")


def _read_blocks(src: _Source, schema: dict[str, Any], ind: int, target: str) -> None:
    is_map = schema["type"] == "map"
    items = schema["values"] if is_map else schema["items"]
    if _min_size(src, items) == 0:
        raise Unsupported("items that take no bytes")  # counts would not be bounded by the input
    count, item, key = src.local("c"), src.local(), src.local("k")
    src.emit(ind, f"{target} = {{}}" if is_map else f"{target} = []")
    src.emit(ind, "while True:")
    _read_varint(src, ind + 1, count)
    src.emit(ind + 1, f"if {count} == 0:")
    src.emit(ind + 2, "break")
    src.emit(ind + 1, f"if {count} < 0:")
    src.emit(ind + 2, f"{count} = -{count}")
    _read_varint(src, ind + 2, src.local("skip"))  # the block's size in bytes
    src.emit(ind + 1, f"if {count} > size - pos:")
    src.emit(ind + 2, "raise ValueError('block count')")
    src.emit(ind + 1, f"for _ in range({count}):")
    if is_map:
        _read_value(src, "string", ind + 2, key)
    _read_value(src, items, ind + 2, item)
    src.emit(ind + 2, f"{target}[{key}] = {item}" if is_map else f"{target}.append({item})")


def compile_reader(parsed: Any, name: str = "record") -> Reader | None:
    """read(buf, pos) -> (record, end) for a parsed record schema; None if not supported.

    The record is only what the bytes say when `end` is the length of `buf`.
    """
    if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
        return None
    src = _Source(parsed)
    src.emit(0, "def read(buf, pos):")
    src.emit(1, "size = len(buf)")
    try:
        with src.named(parsed):
            _read_record(src, parsed, 1, "record")
    except Unsupported:
        return None
    src.emit(1, "return record, pos")
    return src.compile("read", name)  # type: ignore[no-any-return]


def compile_batch_reader(parsed: Any, header: bytes, name: str = "record") -> BatchReader | None:
    """read_batch(items, slow) for a parsed record schema; None if not supported.

    For each item (anything with `raw` and `value`, in order) whose `raw` is `header` +
    an Avro body of the schema, sets `value` to the record and keeps the item; every
    other item goes to `slow(item)`, which decodes it some other way and says whether
    to keep it. Returns the items kept. One call per batch, not two per record.
    """
    if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
        return None
    src = _Source(parsed)
    head = src.constant(header)
    skip = len(header)
    src.emit(0, "def read_batch(items, slow):")
    src.emit(1, "kept = []")
    src.emit(1, "keep = kept.append")
    src.emit(1, "for item in items:")
    src.emit(2, "buf = item.raw")
    src.emit(2, f"if type(buf) is bytes and buf.startswith({head}):")
    src.emit(3, "try:")
    src.emit(4, f"pos = {skip}")
    src.emit(4, "size = len(buf)")
    try:
        with src.named(parsed):
            _read_record(src, parsed, 4, "value")
    except Unsupported:
        return None
    src.emit(4, "if pos == size:")
    src.emit(5, "item.value = value")
    src.emit(5, "keep(item)")
    src.emit(5, "continue")
    src.emit(3, "except Exception:")
    src.emit(4, "pass")
    src.emit(2, "if slow(item):")
    src.emit(3, "keep(item)")
    src.emit(1, "return kept")
    return src.compile("read_batch", name)  # type: ignore[no-any-return]


# --- writers ---------------------------------------------------------------------------


def _write_varint(src: _Source, ind: int, value: str, wide: bool = False) -> None:
    """Appends the varint of an int local known to be in the long range; `wide` ones (int
    and long values, often timestamps) loop in line, not in a call."""
    src.emit(ind, f"if 0 <= {value} < 64:")
    src.emit(ind + 1, f"out.append({value} << 1)")
    src.emit(ind, "else:")
    if not wide:
        src.emit(ind + 1, f"_write_long(out, {value})")
        return
    z = src.local("z")
    src.emit(ind + 1, f"{z} = ({value} << 1) ^ ({value} >> 63)")
    src.emit(ind + 1, f"while {z} > 0x7F:")
    src.emit(ind + 2, f"out.append(({z} & 0x7F) | 0x80)")
    src.emit(ind + 2, f"{z} >>= 7")
    src.emit(ind + 1, f"out.append({z})")


def _fail(src: _Source, ind: int, condition: str, why: str) -> None:
    src.emit(ind, f"if {condition}:")
    src.emit(ind + 1, f"raise TypeError({why!r})")


def _write_value(src: _Source, schema: Any, ind: int, value: str) -> None:
    """Emits code that appends the local `value` as `schema` to `out`, or raises."""
    schema = src.resolve(schema)
    if schema == "null":
        _fail(src, ind, f"{value} is not None", "null")
    elif schema == "boolean":
        src.emit(ind, f"if {value} is True:")
        src.emit(ind + 1, "out.append(1)")
        src.emit(ind, f"elif {value} is False:")
        src.emit(ind + 1, "out.append(0)")
        src.emit(ind, "else:")
        src.emit(ind + 1, "raise TypeError('boolean')")
    elif schema in ("int", "long"):
        low, high = ("INT_MIN", "INT_MAX") if schema == "int" else ("LONG_MIN", "LONG_MAX")
        _fail(src, ind, f"type({value}) is not int or not {low} <= {value} <= {high}", schema)
        _write_varint(src, ind, value, wide=True)
    elif schema in ("float", "double"):
        _fail(src, ind, f"type({value}) is not float and type({value}) is not int", schema)
        src.emit(ind, f"out += {'_pack_f' if schema == 'float' else '_pack_d'}({value})")
    elif schema in ("bytes", "string"):
        data = src.local("s")
        if schema == "string":
            _fail(src, ind, f"type({value}) is not str", "string")
            src.emit(ind, f"{data} = {value}.encode()")
        else:
            _fail(src, ind, f"type({value}) is not bytes", "bytes")
            src.emit(ind, f"{data} = {value}")
        n = src.local("n")
        src.emit(ind, f"{n} = len({data})")
        _write_varint(src, ind, n)
        src.emit(ind, f"out += {data}")
    elif isinstance(schema, list):
        _write_union(src, schema, ind, value)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "error"):
            with src.named(schema):
                _fail(src, ind, f"type({value}) is not dict", "record")
                _write_record(src, schema, ind, value)
        elif kind == "enum":
            index = src.constant({s: i for i, s in enumerate(schema["symbols"])})
            _fail(src, ind, f"type({value}) is not str", "enum")
            i = src.local("i")
            src.emit(ind, f"{i} = {index}[{value}]")
            _write_varint(src, ind, i)
        elif kind == "fixed":
            size = int(schema["size"])
            _fail(src, ind, f"type({value}) is not bytes or len({value}) != {size}", "fixed")
            src.emit(ind, f"out += {value}")
        elif kind == "array":
            _fail(src, ind, f"type({value}) is not list", "array")
            item = src.local()
            src.emit(ind, f"if {value}:")
            n = src.local("n")
            src.emit(ind + 1, f"{n} = len({value})")
            _write_varint(src, ind + 1, n)
            src.emit(ind + 1, f"for {item} in {value}:")
            _write_value(src, schema["items"], ind + 2, item)
            src.emit(ind, "out.append(0)")
        elif kind == "map":
            _fail(src, ind, f"type({value}) is not dict", "map")
            key, item = src.local("k"), src.local()
            src.emit(ind, f"if {value}:")
            n = src.local("n")
            src.emit(ind + 1, f"{n} = len({value})")
            _write_varint(src, ind + 1, n)
            src.emit(ind + 1, f"for {key}, {item} in {value}.items():")
            _write_value(src, "string", ind + 2, key)
            _write_value(src, schema["values"], ind + 2, item)
            src.emit(ind, "out.append(0)")
        else:
            raise Unsupported(f"type {kind}")
    else:
        raise Unsupported(f"type {schema!r}")


def _write_record(src: _Source, schema: dict[str, Any], ind: int, record: str) -> None:
    for field in schema["fields"]:
        local = src.local()
        src.emit(ind, f"{local} = {record}[{field['name']!r}]")
        _write_value(src, field["type"], ind, local)


def _write_union(src: _Source, branches: list[Any], ind: int, value: str) -> None:
    """Nullable unions only: which branch fastavro picks for other unions depends on the value."""
    if len(branches) != 2 or "null" not in branches:
        raise Unsupported("union other than [null, T]")
    other = branches[1 - branches.index("null")]
    if src.resolve(other) == "null" or isinstance(src.resolve(other), list):
        raise Unsupported("union of unions")
    src.emit(ind, f"if {value} is None:")
    src.emit(ind + 1, f"out.append({branches.index('null') << 1})")
    src.emit(ind, "else:")
    src.emit(ind + 1, f"out.append({branches.index(other) << 1})")
    _write_value(src, other, ind + 1, value)


def compile_batch_writer(
    parsed: Any, header: bytes = b"", name: str = "record"
) -> BatchWriter | None:
    """write_batch(items, slow) -> [(item, header + Avro body of item.value)]; None if not supported.

    An item whose `value` the generated code does not write goes to `slow(item)`: its
    bytes, or None to leave it out (the caller has failed it). One call per batch.
    """
    if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
        return None
    src = _Source(parsed)
    head = src.constant(header)
    src.emit(0, "def write_batch(items, slow):")
    src.emit(1, "written = []")
    src.emit(1, "keep = written.append")
    src.emit(1, "for item in items:")
    src.emit(2, "value = item.value")
    src.emit(2, "try:")
    src.emit(3, f"out = bytearray({head})")
    src.emit(3, "if type(value) is not dict:")
    src.emit(4, "raise TypeError('record')")
    try:
        with src.named(parsed):
            _write_record(src, parsed, 3, "value")
    except Unsupported:
        return None
    src.emit(3, "keep((item, bytes(out)))")
    src.emit(3, "continue")
    src.emit(2, "except Exception:")
    src.emit(3, "pass")
    src.emit(2, "data = slow(item)")
    src.emit(2, "if data is not None:")
    src.emit(3, "keep((item, data))")
    src.emit(1, "return written")
    return src.compile("write_batch", name)  # type: ignore[no-any-return]


def compile_writer(parsed: Any, header: bytes = b"", name: str = "record") -> Writer | None:
    """write(record) -> header + Avro body for a parsed record schema; None if not supported."""
    if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
        return None
    src = _Source(parsed)
    head = src.constant(header)
    src.emit(0, "def write(record):")
    src.emit(1, f"out = bytearray({head})")
    try:
        with src.named(parsed):
            _write_record(src, parsed, 1, "record")
    except Unsupported:
        return None
    src.emit(1, "return bytes(out)")
    return src.compile("write", name)  # type: ignore[no-any-return]
