"""Generated Avro readers and writers against fastavro: same bytes, same records, or a raise."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamline.serde.fastcodec import (
    LONG_MAX,
    LONG_MIN,
    compile_batch_reader,
    compile_batch_writer,
    compile_reader,
    compile_writer,
)

EVERYTHING = {
    "type": "record",
    "name": "Everything",
    "namespace": "t",
    "fields": [
        {"name": "n", "type": "null"},
        {"name": "flag", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": {"type": "long"}},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "b", "type": "bytes"},
        {"name": "s", "type": "string"},
        {
            "name": "e",
            "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]},
        },
        {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "opt", "type": ["null", "string"]},
        {"name": "opt_last", "type": ["long", "null"]},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "scores", "type": {"type": "map", "values": "double"}},
        {
            "name": "inner",
            "type": {
                "type": "record",
                "name": "Inner",
                "fields": [
                    {"name": "x", "type": "long"},
                    {"name": "colour", "type": "Colour"},
                    {
                        "name": "more",
                        "type": {"type": "array", "items": {"type": "map", "values": "int"}},
                    },
                ],
            },
        },
        {"name": "again", "type": "Inner"},
        {"name": "maybe_inner", "type": ["null", "Inner"]},
    ],
}

ORDER = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "created_at", "type": "long"},
    ],
}

PARSED = fastavro.parse_schema(EVERYTHING)
READ = compile_reader(PARSED)
WRITE = compile_writer(PARSED)

floats = st.floats(width=32, allow_nan=False)
inner = st.fixed_dictionaries(
    {
        "x": st.integers(LONG_MIN, LONG_MAX),
        "colour": st.sampled_from(["RED", "GREEN", "BLUE"]),
        "more": st.lists(
            st.dictionaries(st.text(max_size=5), st.integers(-(2**31), 2**31 - 1), max_size=3),
            max_size=3,
        ),
    }
)
everything = st.fixed_dictionaries(
    {
        "n": st.none(),
        "flag": st.booleans(),
        "i": st.integers(-(2**31), 2**31 - 1),
        "l": st.integers(LONG_MIN, LONG_MAX),
        "f": floats,
        "d": st.floats(allow_nan=False) | st.integers(-(2**53), 2**53),
        "b": st.binary(max_size=80),
        "s": st.text(max_size=80),
        "e": st.sampled_from(["RED", "GREEN", "BLUE"]),
        "fx": st.binary(min_size=4, max_size=4),
        "opt": st.none() | st.text(max_size=10),
        "opt_last": st.none() | st.integers(LONG_MIN, LONG_MAX),
        "tags": st.lists(st.text(max_size=8), max_size=70),
        "scores": st.dictionaries(st.text(max_size=8), st.floats(allow_nan=False), max_size=5),
        "inner": inner,
        "again": inner,
        "maybe_inner": st.none() | inner,
    }
)


def fastavro_bytes(parsed: Any, record: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, record)
    return out.getvalue()


def fastavro_record(parsed: Any, data: bytes) -> Any:
    body = io.BytesIO(data)
    record = fastavro.schemaless_reader(body, parsed, None)
    assert body.tell() == len(data), "trailing bytes"
    return record


def test_everything_is_supported_and_recursion_is_not() -> None:
    assert READ is not None and WRITE is not None
    recursive = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Node",
            "fields": [{"name": "next", "type": ["null", "Node"]}],
        }
    )
    assert compile_reader(recursive) is None and compile_writer(recursive) is None
    nulls = fastavro.parse_schema(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "a", "type": {"type": "array", "items": "null"}}],
        }
    )
    assert compile_reader(nulls) is None  # counts of zero-byte items are not bounded by the input
    union = fastavro.parse_schema(
        {"type": "record", "name": "U", "fields": [{"name": "a", "type": ["int", "string"]}]}
    )
    assert compile_writer(union) is None  # fastavro picks the branch by value
    assert compile_reader(union) is not None
    assert compile_reader(fastavro.parse_schema("string")) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(everything)
def test_writes_the_bytes_fastavro_writes_and_reads_them_back(record: dict[str, Any]) -> None:
    assert WRITE is not None and READ is not None
    data = WRITE(record)
    assert data == fastavro_bytes(PARSED, record)
    decoded, end = READ(data, 0)
    assert end == len(data)
    assert decoded == fastavro_record(PARSED, data)


def test_single_object_header_is_written_first() -> None:
    parsed = fastavro.parse_schema(ORDER)
    write = compile_writer(parsed, b"\xc3\x01HEADER!!")
    read = compile_reader(parsed)
    assert write is not None and read is not None
    record = {"order_id": "o-1", "amount": 12.5, "created_at": 1_764_000_000_000}
    data = write(record)
    assert data == b"\xc3\x01HEADER!!" + fastavro_bytes(parsed, record)
    assert read(data, 10) == (record, len(data))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=60), everything)
def test_garbage_is_refused_or_read_as_fastavro_reads_it(
    garbage: bytes, record: dict[str, Any]
) -> None:
    """Corrupt, cut and random bytes: the generated reader never returns a different record."""
    assert READ is not None
    valid = fastavro_bytes(PARSED, record)
    for data in (
        garbage,
        valid[: len(valid) // 2],
        valid[:-1],
        valid + b"\x00",
        valid[:5] + garbage,
    ):
        try:
            mine, end = READ(data, 0)
        except Exception:
            continue
        if end != len(data):
            continue  # the codec treats this as a misfit and asks fastavro
        theirs = fastavro_record(PARSED, data)
        # compared as fastavro writes them: NaN read from garbage is not equal to itself
        assert fastavro_bytes(PARSED, mine) == fastavro_bytes(PARSED, theirs)


WRONG_VALUES = [
    ("flag", 1),
    ("flag", None),
    ("i", 2**31),
    ("i", True),
    ("i", 1.0),
    ("l", 2**63),
    ("l", "1"),
    ("f", "1.0"),
    ("f", 1e300),
    ("d", None),
    ("b", "text"),
    ("s", b"bytes"),
    ("s", 1),
    ("e", "PURPLE"),
    ("e", 0),
    ("fx", b"12345"),
    ("opt", 3),
    ("tags", ("a", "b")),
    ("tags", ["a", 1]),
    ("scores", {1: 1.0}),
    ("inner", None),
    ("n", 0),
]


@pytest.mark.parametrize(("field", "value"), WRONG_VALUES)
def test_values_of_another_type_raise(field: str, value: Any) -> None:
    """So the codec hands them to fastavro, which writes them its way or names the field."""
    assert WRITE is not None
    record = {
        "n": None, "flag": True, "i": 1, "l": 2, "f": 1.5, "d": 2.5, "b": b"", "s": "",
        "e": "RED", "fx": b"1234", "opt": None, "opt_last": None, "tags": [], "scores": {},
        "inner": {"x": 1, "colour": "RED", "more": []},
        "again": {"x": 1, "colour": "RED", "more": []},
        "maybe_inner": None,
    }  # fmt: skip
    WRITE(record)
    record[field] = value
    with pytest.raises(Exception):  # noqa: B017 - any raise sends it to fastavro
        WRITE(record)
    missing = dict(record, **{field: None})
    del missing[field]
    with pytest.raises(KeyError):
        WRITE(missing)


class Item:
    """What the batch reader and writer take: input bytes and the value made of them."""

    def __init__(self, raw: Any, value: Any = None) -> None:
        self.raw = raw
        self.value = value


HEADER = b"\xc3\x01HEADER!!"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(everything, max_size=4), st.binary(max_size=30))
def test_batches_read_and_write_what_one_record_at_a_time_does(
    records: list[dict[str, Any]], garbage: bytes
) -> None:
    """Each item as the per-record functions do it; the rest go, in order, to `slow`."""
    read_batch = compile_batch_reader(PARSED, HEADER)
    write_batch = compile_batch_writer(PARSED, HEADER)
    assert READ is not None and read_batch is not None and write_batch is not None
    bodies = [fastavro_bytes(PARSED, r) for r in records]
    items = [Item(HEADER + b) for b in bodies]
    others = [
        Item(None), Item(bytearray(HEADER + bodies[0]) if bodies else b""),
        Item(b"\xc3\x01OTHER!!!" + garbage), Item(HEADER + garbage), Item(HEADER),
    ]  # fmt: skip
    mixed = [x for pair in zip(items, others, strict=False) for x in pair] + items[len(others) :]
    mixed += others[len(items) :]
    slow: list[Item] = []
    kept = read_batch(mixed, lambda item: slow.append(item) or item.raw is None)
    for item in mixed:
        if item in slow:
            continue
        assert item in kept
        mine, end = READ(item.raw, len(HEADER))
        assert end == len(item.raw) and item.value == mine
    assert [x for x in kept if x not in slow] == [x for x in mixed if x not in slow]
    assert all(x in slow for x in others if not (type(x.raw) is bytes and x in kept))
    assert [x for x in kept if x in slow] == [x for x in slow if x.raw is None]
    for item, record in zip(items, records, strict=True):
        assert item in kept and item.value == fastavro_record(PARSED, item.raw[len(HEADER) :])
        item.value = record

    misfit = Item(None, dict(records[0], i="one") if records else {"i": "one"})
    order = [*items[:1], misfit, *items[1:]]
    refused: list[Item] = []
    written = write_batch(order, lambda item: refused.append(item) or None)
    assert refused == [misfit]
    assert written == [(item, HEADER + body) for item, body in zip(items, bodies, strict=True)]
    fixed = write_batch([misfit], lambda item: b"slow")
    assert fixed == [(misfit, b"slow")]


def test_batch_functions_of_unsupported_schemas_are_none() -> None:
    recursive = fastavro.parse_schema(
        {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
    )
    assert compile_batch_reader(recursive, HEADER) is None
    assert compile_batch_writer(recursive, HEADER) is None
    assert compile_batch_reader(fastavro.parse_schema("string"), HEADER) is None


SIX_BYTE_EDGES = [
    2**34 - 1, 2**34, 2**41 - 1, 2**41, -(2**34), -(2**34) - 1, -(2**41), -(2**41) - 1,
    1_764_000_000_000, -1_764_000_000_000, 0, 63, 64, LONG_MAX, LONG_MIN,
]  # fmt: skip


@pytest.mark.parametrize("value", SIX_BYTE_EDGES)
def test_longs_of_every_varint_length_are_written_and_read_as_fastavro_does(value: int) -> None:
    """Epoch milliseconds and the varint lengths around them, and the extremes."""
    parsed = fastavro.parse_schema(ORDER)
    write, read = compile_writer(parsed), compile_reader(parsed)
    assert write is not None and read is not None
    record = {"order_id": "o", "amount": 1.0, "created_at": value}
    data = write(record)
    assert data == fastavro_bytes(parsed, record)
    assert read(data, 0) == (record, len(data))
    with pytest.raises(IndexError):  # cut short: refused
        read(data[:-1], 0)
