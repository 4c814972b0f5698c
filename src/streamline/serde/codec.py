"""Avro single-object encoding: `C3 01`, the writer's CRC-64-AVRO fingerprint, the binary body.

Decoding resolves the writer schema by its fingerprint and reads with the caller's
reader schema, so compatible evolution (added fields with defaults, removed fields)
just works.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

from streamline.serde.fastcodec import (
    BatchReader,
    BatchWriter,
    Writer,
    compile_batch_reader,
    compile_batch_writer,
    compile_reader,
    compile_writer,
)
from streamline.serde.schema_store import Schema, SchemaStore

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10


class DecodeError(ValueError):
    """Bytes that cannot be read as a record; `kind` says why (decode or schema)."""

    def __init__(self, message: str, kind: str = "decode") -> None:
        super().__init__(message)
        self.kind = kind


class EncodeError(ValueError):
    """A record that does not fit the schema it is written with."""


class AvroWriter:
    """Writes records of `schema` as `_header` + the Avro body (`_write`: the generated writer, or None)."""

    schema: Schema
    _header: bytes
    _write: Writer | None
    write_batch: BatchWriter | None = None
    """write_batch(items, slow): the generated writer over a batch (see `compile_batch_writer`)."""

    def encode(self, record: dict[str, Any], *, check: bool = True) -> bytes:
        """`_header` + the record's Avro body; with `check`, a record that does not fit gets a message naming the field."""
        if check:
            try:
                validate(record, self.schema.parsed, raise_errors=True)
            except ValidationError as exc:
                raise EncodeError(describe_validation_error(exc)) from None
        if self._write is not None:
            try:
                return self._write(record)
            except Exception:
                pass
        out = BytesIO()
        out.write(self._header)
        try:
            fastavro.schemaless_writer(out, self.schema.parsed, record)
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
            if not check:  # say which field, as the checked path would
                try:
                    validate(record, self.schema.parsed, raise_errors=True)
                except ValidationError as invalid:
                    raise EncodeError(describe_validation_error(invalid)) from None
            raise EncodeError(f"does not fit {self.schema.name}: {exc!r}") from None
        return out.getvalue()


class AvroCodec(AvroWriter):
    """Reads and writes single-object encoded records of one reader/writer schema."""

    def __init__(self, store: SchemaStore, schema: Schema) -> None:
        self.store = store
        self.schema = schema
        self._header = MAGIC + schema.fingerprint
        # writer fingerprint -> writer parsed schema, or None when it is the reader schema
        self._resolved: dict[bytes, Any] = {}
        # generated for this schema; anything they raise is done again by fastavro
        self._read = compile_reader(schema.parsed, schema.name)
        self._write = compile_writer(schema.parsed, self._header, schema.name)
        self.read_batch: BatchReader | None = compile_batch_reader(
            schema.parsed, self._header, schema.name
        )
        """read_batch(items, slow): the generated reader over a batch (see `compile_batch_reader`)."""
        self.write_batch = compile_batch_writer(schema.parsed, self._header, schema.name)

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """The record in `data`, read as this codec's schema."""
        read = self._read
        if read is not None and type(data) is bytes and data.startswith(self._header):
            try:  # written with this schema: no resolution, the generated reader
                fast, end = read(data, HEADER_SIZE)
                if end == len(data):
                    return fast
            except Exception:
                pass
        if type(data) is not bytes and data is not None:
            data = bytes(data)  # bytearray, memoryview
        if data is None or len(data) < HEADER_SIZE or not data.startswith(MAGIC):
            writer_schema(self.store, data)  # raises the reason
        assert data is not None
        fp = data[2:HEADER_SIZE]
        try:
            writer = self._resolved[fp]
        except KeyError:
            writer = self._resolve(bytes(fp))
        body = BytesIO(data)
        body.seek(HEADER_SIZE)
        record: Any
        try:
            if writer is None:
                record = fastavro.schemaless_reader(body, self.schema.parsed, None)
            else:
                record = fastavro.schemaless_reader(body, writer, self.schema.parsed)
        except (EOFError, StopIteration, IndexError) as exc:
            raise DecodeError(f"truncated record: {exc or 'ran out of bytes'}") from None
        except fastavro.read.SchemaResolutionError as exc:
            raise DecodeError(f"schema resolution failed: {exc}", kind="schema") from None
        except (ValueError, TypeError, UnicodeDecodeError, OverflowError, KeyError) as exc:
            raise DecodeError(f"corrupt record: {exc}") from None
        if body.tell() != len(data):
            raise DecodeError(f"corrupt record: {len(data) - body.tell()} trailing bytes")
        if not isinstance(record, dict):
            raise DecodeError("corrupt record: not a record")
        return record

    def _resolve(self, fp: bytes) -> Any:
        if fp == self.schema.fingerprint:
            self._resolved[fp] = None
            return None
        writer = writer_schema(self.store, MAGIC + fp)
        self._resolved[fp] = writer.parsed
        return writer.parsed


def writer_schema(store: SchemaStore, data: bytes | None) -> Schema:
    """The schema whose fingerprint `data` carries; DecodeError saying why there is none."""
    if data is None:
        raise DecodeError("empty value (tombstone)")
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        raise DecodeError("not single-object encoded (expected the C3 01 marker)")
    schema = store.by_fingerprint(bytes(data[2:HEADER_SIZE]))
    if schema is None:
        raise DecodeError(
            f"unknown fingerprint {bytes(data[2:HEADER_SIZE]).hex()}: no schema in the store has it",
            "schema",
        )
    return schema


def describe_validation_error(exc: ValidationError) -> str:
    """One line per invalid field, from fastavro's validation error."""
    problems = []
    for err in exc.errors:
        name = getattr(err, "field", "") or "record"
        datum = getattr(err, "datum", None)
        schema = getattr(err, "schema", None)
        expected = (
            schema
            if isinstance(schema, str)
            else (schema.get("type") if isinstance(schema, dict) else schema)
        )
        problems.append(f"field {name}: {datum!r} is not a valid {expected}")
    return "; ".join(problems) or str(exc)
