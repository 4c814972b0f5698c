"""One input record on its way through the stages."""

from __future__ import annotations

from typing import Any

from streamline.headers import ORIGINAL, SOURCE_KEY, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC

Headers = list[tuple[str, bytes]]


class Record:
    """An input record: where it came from, its original bytes, and what the stages made of it.

    A record read from the repartition topic carries its source record's position, key
    and bytes in headers; `origin()` and `original()` give those, so dead letters and
    late records always name and hold the record as it entered the topology.
    """

    __slots__ = (
        "event_time",
        "headers",
        "key",
        "last_offset",
        "offset",
        "out_key",
        "partition",
        "raw",
        "topic",
        "value",
    )

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        raw: bytes | None,
        headers: Headers | None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.last_offset = offset
        self.key = key
        self.raw = raw
        self.headers = headers
        self.value: dict[str, Any] = {}
        self.event_time = 0
        self.out_key = key

    def source_range(self) -> bytes:
        """The `streamline.source` header: `topic/partition/first_offset-last_offset`."""
        return f"{self.topic}/{self.partition}/{self.offset}-{self.last_offset}".encode()

    def header(self, name: str) -> bytes | None:
        """The value of the record's header `name`, if it has one."""
        return self._header(name)

    def _header(self, name: str) -> bytes | None:
        for key, value in self.headers or ():
            if key == name:
                return value
        return None

    def origin(self) -> tuple[str, int, int]:
        """(topic, partition, offset) of the record as it entered the topology.

        Records from the repartition or retry topic name it in `streamline.source.*` headers.
        """
        topic = self._header(SOURCE_TOPIC)
        if topic is None:
            return self.topic, self.partition, self.offset
        return (
            topic.decode(),
            int(self._header(SOURCE_PARTITION) or b"0"),
            int(self._header(SOURCE_OFFSET) or b"0"),
        )

    def original(self) -> tuple[bytes | None, bytes | None]:
        """(key, value) bytes of the record as it entered the topology."""
        raw = self._header(ORIGINAL)
        if raw is None:
            return self.key, self.raw
        return self._header(SOURCE_KEY), raw

    def __repr__(self) -> str:
        return f"Record({self.topic}/{self.partition}@{self.offset})"
