"""The wire formats a topic's values can be in, and a codec for each.

- `avro`: single-object encoding (`AvroCodec`);
- `confluent-avro`: a `00` byte, the writer schema's 4-byte Schema Registry id, the Avro
  body (`ConfluentAvroCodec`); writer schemas come from a `WriterSchemas` (the registry
  client lives in `streamline.kafka.registry`) and are cached by id, so once an id is known
  a record costs what a single-object one does: the generated reader when the writer is the
  reader schema, fastavro's resolving reader otherwise;
- `json`: `JsonCodec`.

A source listing several formats reads each value with the codec its first byte names
(`AnyOfCodec`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from io import BytesIO
from typing import Any, Protocol

import fastavro
from fastavro.schema import to_parsing_canonical_form

from streamline.serde.codec import MAGIC, AvroCodec, AvroWriter, DecodeError, EncodeError
from streamline.serde.fastcodec import compile_reader, compile_writer
from streamline.serde.json_codec import JsonCodec
from streamline.serde.schema_store import Schema, SchemaStore

FORMATS = ("avro", "confluent-avro", "json")
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER = 5


class Codec(Protocol):
    """What the stages need of a format: bytes to a record and back."""

    def decode(self, data: bytes | None) -> dict[str, Any]: ...

    def encode(self, record: dict[str, Any], *, check: bool = True) -> bytes: ...


class WriterSchemas(Protocol):
    """Writer schemas by Schema Registry id."""

    def writer_schema(self, schema_id: int) -> dict[str, Any] | list[Any] | str:
        """The Avro schema registered with this id (parsed JSON).

        Raises DecodeError(kind="schema") for an id the registry does not know, and waits
        (retrying) while the registry cannot be reached.
        """
        ...


class SchemaRegistry(WriterSchemas, Protocol):
    """Writer schemas by id, and the id a sink writes its schema under."""

    def sink_schema_id(self, subject: str, schema: Schema, auto_register: bool) -> int:
        """Registers `schema` under `subject` (or, without `auto_register`, finds it there)."""
        ...


def subject_name(strategy: str, topic: str, record_name: str) -> str:
    """The subject a schema is registered under: `topic`, `record` or `topic-record` strategy."""
    if strategy == "record":
        return record_name
    if strategy == "topic-record":
        return f"{topic}-{record_name}"
    return f"{topic}-value"


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_logical_types(n) for n in node]
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    return node


class ConfluentAvroCodec(AvroWriter):
    """Reads Confluent-framed Avro as `schema`; writes it under `schema_id` (once registered)."""

    def __init__(
        self, schema: Schema, registry: WriterSchemas | None, schema_id: int | None = None
    ) -> None:
        self.schema = schema
        self.registry = registry
        self.schema_id = schema_id
        # id -> None (the writer is the reader schema) or the writer's parsed schema
        self._writers: dict[int, Any] = {}
        self._read = compile_reader(schema.parsed, schema.name)
        self._write = None
        self._header = b""
        if schema_id is not None:
            self._header = bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")
            self._write = compile_writer(schema.parsed, self._header, schema.name)

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            raise DecodeError("empty value (tombstone)")
        if len(data) < CONFLUENT_HEADER or data[0] != CONFLUENT_MAGIC:
            raise DecodeError("not Confluent Avro (expected a 00 byte and a 4-byte schema id)")
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER], "big")
        try:
            writer = self._writers[schema_id]
        except KeyError:
            try:
                writer = self._writers[schema_id] = self._resolve(schema_id)
            except DecodeError as exc:  # an id the registry does not know: asked once
                writer = self._writers[schema_id] = exc
        if type(writer) is DecodeError:
            raise DecodeError(str(writer), writer.kind)
        if writer is None and self._read is not None:
            try:
                fast, end = self._read(data, CONFLUENT_HEADER)
                if end == len(data):
                    return fast
            except Exception:
                pass
        body = BytesIO(data)
        body.seek(CONFLUENT_HEADER)
        record: Any
        try:
            if writer is None:
                record = fastavro.schemaless_reader(body, self.schema.parsed, None)
            else:
                record = fastavro.schemaless_reader(body, writer, self.schema.parsed)
        except (EOFError, StopIteration, IndexError) as exc:
            raise DecodeError(f"truncated record: {exc or 'ran out of bytes'}") from None
        except fastavro.read.SchemaResolutionError as exc:
            raise DecodeError(
                f"schema id {schema_id} cannot be read as {self.schema.name}: {exc}", "schema"
            ) from None
        except (ValueError, TypeError, UnicodeDecodeError, OverflowError, KeyError) as exc:
            raise DecodeError(f"corrupt record: {exc}") from None
        if body.tell() != len(data):
            raise DecodeError(f"corrupt record: {len(data) - body.tell()} trailing bytes")
        if not isinstance(record, dict):
            raise DecodeError("corrupt record: not a record")
        return record

    def _resolve(self, schema_id: int) -> Any:
        if self.registry is None:
            raise DecodeError(f"unknown schema id {schema_id}: no schema registry", "schema")
        definition = self.registry.writer_schema(schema_id)
        try:
            canonical = to_parsing_canonical_form(definition)
            if canonical == self.schema.canonical_form:
                return None
            return fastavro.parse_schema(_without_logical_types(definition))
        except Exception as exc:
            raise DecodeError(
                f"schema id {schema_id} is not a usable Avro schema: {exc}", "schema"
            ) from None

    def encode(self, record: dict[str, Any], *, check: bool = True) -> bytes:
        if self.schema_id is None:
            raise EncodeError("the sink schema is not registered (no schema id)")
        return super().encode(record, check=check)


class AnyOfCodec:
    """Reads values in any of several formats, told apart by their first byte; writes the first."""

    def __init__(self, codecs: dict[str, Codec]) -> None:
        self.codecs = codecs
        self.names = list(codecs)
        self._avro = codecs.get("avro")
        self._confluent = codecs.get("confluent-avro")
        self._json = codecs.get("json")

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data:
            first = data[0]
            codec = (
                self._avro
                if first == MAGIC[0]
                else self._confluent
                if first == CONFLUENT_MAGIC
                else self._json
            )
            if codec is not None:
                return codec.decode(data)
        elif data is None:
            raise DecodeError("empty value (tombstone)")
        raise DecodeError(f"not in any of the source's formats ({', '.join(self.names)})")

    def encode(self, record: dict[str, Any], *, check: bool = True) -> bytes:
        return self.codecs[self.names[0]].encode(record, check=check)


def codec_for(
    formats: str | Sequence[str],
    store: SchemaStore,
    schema: Schema,
    registry: WriterSchemas | None = None,
    schema_id: int | None = None,
) -> Codec:
    """The codec of one format, or of several told apart by first byte."""
    names = [formats] if isinstance(formats, str) else list(formats)
    codecs: dict[str, Codec] = {}
    for name in names:
        if name == "avro":
            codecs[name] = AvroCodec(store, schema)
        elif name == "confluent-avro":
            codecs[name] = ConfluentAvroCodec(schema, registry, schema_id)
        elif name == "json":
            codecs[name] = JsonCodec(schema)
        else:
            raise ValueError(f"unknown format {name!r} (known: {', '.join(FORMATS)})")
    if len(codecs) == 1:
        return codecs[names[0]]
    return AnyOfCodec(codecs)


def schema_text(schema: Schema) -> str:
    """The schema as registered: its definition with referenced types inlined, as JSON."""
    return json.dumps(schema.definition, separators=(",", ":"))


def schema_reader(definition: Any) -> Any:
    """A reader of Confluent-framed values written with `definition`, read as written."""
    parsed = fastavro.parse_schema(_without_logical_types(definition))

    def read(data: bytes) -> dict[str, Any]:
        body = BytesIO(data)
        body.seek(CONFLUENT_HEADER)
        try:
            return fastavro.schemaless_reader(body, parsed, None)  # type: ignore[return-value]
        except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
            raise DecodeError(f"corrupt record: {exc}") from None

    return read
