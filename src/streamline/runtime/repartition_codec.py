"""The value of a record in `<name>.repartition`: the keyed record and its source's position.

Format 1 (what this version writes) is one MessagePack array, with no headers:

    [1, event_time, source topic, source partition, source offset, source key,
     original value bytes, value]

`value` is the record as the stages left it (a map of field to value), with only the fields
the window's aggregates read (none for `count()` alone): nothing else reads it, and the
fewer fields, the less there is to encode and decode. The grouping key
is the Kafka key of the repartition record (the window stage adds it to the value under
the key's name). Everything a window task needs is one C-level decode, and the producer
and consumer convert no headers.

The earlier format, which a repartition topic may still hold after an upgrade, is the
value as compact JSON (the grouping key added under the key's name) with the event time
and the source record's position, key and bytes in `streamline.*` headers. It is still
read, and still written for a value MessagePack cannot carry (an integer beyond 64 bits),
so such a record keeps working as it did. A JSON value starts with `{`; a format 1 value
with a MessagePack array's tag.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgpack

from streamline import headers as h
from streamline.runtime.record import Headers, Record
from streamline.topology.model import Topology

FORMAT = 1
"""The version number that leads a format 1 value."""
_JSON_START = 0x7B  # "{"
_unpackb = msgpack.unpackb


class RepartitionEncoder:
    """Encodes keyed records for the repartition topic (one per repartitioner).

    `fields`: the value's fields the window stage reads (its aggregates' inputs); the
    record carries only those. None: the whole value.
    """

    def __init__(self, key_name: str, fields: Iterable[str] | None = None) -> None:
        self._key_name = key_name
        self._fields = None if fields is None else tuple(fields)
        self._pack = msgpack.Packer().pack

    @classmethod
    def of(cls, topology: Topology) -> RepartitionEncoder:
        """The encoder of a repartitioned topology: its key, its window's input fields."""
        assert topology.key_by is not None and topology.window is not None
        calls = topology.window.aggregate.values()
        fields = sorted({call.field for call in calls if call.field is not None})
        return cls(topology.key_by.key_name, fields)

    def _value(self, record: Record) -> dict[str, Any]:
        fields, value = self._fields, record.value
        if fields is None:
            return value
        return {name: value[name] for name in fields if name in value}

    def encode(self, record: Record) -> tuple[bytes, Headers | None]:
        """The repartition record's value and headers (none, but in the JSON fallback)."""
        try:
            return self._pack(
                [
                    FORMAT,
                    record.event_time,
                    record.topic,
                    record.partition,
                    record.offset,
                    record.key,
                    record.raw or b"",
                    self._value(record),
                ]
            ), None
        except (OverflowError, TypeError, ValueError):
            return self.encode_json(record)

    def encode_json(self, record: Record) -> tuple[bytes, Headers]:
        """The earlier format: the value (with the grouping key) as JSON, the rest in headers."""
        value = dict(self._value(record))
        value[self._key_name] = record.out_key.decode() if record.out_key is not None else None
        headers = [
            (h.EVENT_TIME, str(record.event_time).encode()),
            (h.ORIGINAL, record.raw or b""),
            (h.SOURCE_TOPIC, record.topic.encode()),
            (h.SOURCE_PARTITION, str(record.partition).encode()),
            (h.SOURCE_OFFSET, str(record.offset).encode()),
        ]
        if record.key is not None:
            headers.append((h.SOURCE_KEY, record.key))
        return json.dumps(value, separators=(",", ":")).encode(), headers


Decoded = tuple[dict[str, Any], int, Any, list[Any] | None]
"""(value, event time, grouping key, format 1 fields) of a repartition record: the key is a
str, or None when the stages gave none; the fields are None for the earlier format."""


def decode_repartitioned(record: Record, key_name: str) -> Decoded:
    """The value, event time and grouping key of a (non-marker) repartition record.

    Format 1 sets the grouping key in the value under `key_name`, as the earlier format
    carried it. Raises `ValueError` for a value neither format can read.
    """
    data = record.raw
    if not data:
        raise ValueError("a repartition record without a value")
    if data[0] == _JSON_START:
        value = json.loads(data)
        if not isinstance(value, dict):
            raise ValueError("a JSON repartition value that is not an object")
        headers = dict(record.headers or [])
        return value, int(headers[h.EVENT_TIME]), value.get(key_name), None
    fields = _unpackb(data, strict_map_key=False)
    if type(fields) is not list or len(fields) != 8 or fields[0] != FORMAT:
        raise ValueError(f"unknown repartition record format (first byte {data[0]:#04x})")
    value = fields[7]
    key = record.key.decode() if record.key is not None else None
    value[key_name] = key
    return value, fields[1], key, fields


def origin_headers(fields: list[Any]) -> Headers:
    """The source's position, key and bytes of a format 1 record, as the earlier format's
    headers: what `Record.origin()` and `original()` read for dead letters and late records."""
    _, _, topic, partition, offset, source_key, original, _ = fields
    headers: Headers = [
        (h.ORIGINAL, original),
        (h.SOURCE_TOPIC, topic.encode()),
        (h.SOURCE_PARTITION, str(partition).encode()),
        (h.SOURCE_OFFSET, str(offset).encode()),
    ]
    if source_key is not None:
        headers.append((h.SOURCE_KEY, source_key))
    return headers
