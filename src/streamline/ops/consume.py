"""`streamline consume`: read_committed records decoded from single-object Avro into JSON lines."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Message, TopicPartition

from streamline.kafka.access import GROUP_AUTHORIZATION_FAILED
from streamline.kafka.admin import require_topics
from streamline.kafka.connection import Connection
from streamline.observability.heartbeats import HEARTBEATS_TOPIC
from streamline.observability.lineage import LINEAGE_TOPIC
from streamline.serde import AvroCodec, DecodeError, SchemaStore
from streamline.serde.codec import writer_schema
from streamline.serde.convert import to_json_value
from streamline.topology.resources import AUDIT_TOPIC


def _text_or_base64(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


JSON_TOPICS = frozenset({HEARTBEATS_TOPIC, LINEAGE_TOPIC, AUDIT_TOPIC})
"""The shared topics whose values are JSON documents, printed as JSON (not base64)."""


class RecordPrinter:
    """Turns a Kafka message into the JSON object `consume` prints."""

    def __init__(self, store: SchemaStore | None, reader_schema: str | None = None) -> None:
        self.store = store
        self.reader = store.get(reader_schema) if (store and reader_schema) else None
        self._codecs: dict[str, AvroCodec] = {}

    def _decode(self, value: bytes | None) -> dict[str, Any]:
        if value is None:
            return {"value": None}
        if self.store is None:
            return {"value_base64": base64.b64encode(value).decode(), "note": "no schema store"}
        try:
            schema = self.reader or writer_schema(self.store, value)
            codec = self._codecs.get(schema.name)
            if codec is None:
                codec = self._codecs[schema.name] = AvroCodec(self.store, schema)
            return {"schema": schema.name, "value": to_json_value(codec.decode(value))}
        except DecodeError as exc:
            return {"value_base64": base64.b64encode(value).decode(), "note": f"not decoded: {exc}"}

    def to_json(self, msg: Message, headers: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
            "timestamp": msg.timestamp()[1],
            "key": _text_or_base64(msg.key()),
        }
        value = msg.value()
        if msg.topic() in JSON_TOPICS and value is not None:
            try:
                out["value"] = json.loads(value)
            except ValueError:
                out.update(self._decode(value))
        else:
            out.update(self._decode(value))
        if headers:
            pairs = cast(list[tuple[str, bytes | None]], msg.headers() or [])
            out["headers"] = {k: _text_or_base64(v) for k, v in pairs}
        return out


def read_topic(
    connection: Connection,
    topic: str,
    from_beginning: bool = False,
    max_records: int | None = None,
    idle_timeout: float | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Message]:
    """Committed records of every partition of `topic`, until `max_records`, idle for `idle_timeout`, or `stop()`."""
    partitions = require_topics(connection, [topic])[topic]
    consumer = Consumer(
        connection.config(
            **{
                "group.id": f"streamline-consume-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": False,
            },
            log_level=0,
        )
    )
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(topic, p, start) for p in range(partitions)])
    seen = 0
    last = time.monotonic()
    try:
        while not stop() and (max_records is None or seen < max_records):
            batch = consumer.consume(
                num_messages=min(500, (max_records - seen) if max_records else 500), timeout=0.2
            )
            for msg in batch:
                error = msg.error()
                # assigned partitions need no group: a denied group only stops offset commits
                if error is not None and error.code() != GROUP_AUTHORIZATION_FAILED:
                    denied = connection.access_error(error, topic=topic, operation="READ")
                    if denied is not None:
                        raise denied
            records = [m for m in batch if m.error() is None]
            for msg in records:
                yield msg
                seen += 1
            if records:
                last = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                return
    finally:
        consumer.close()
