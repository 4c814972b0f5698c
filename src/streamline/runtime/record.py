"""One input record on its way through the stages."""

from __future__ import annotations

from typing import Any

Headers = list[tuple[str, bytes]]


class Record:
    """An input record: where it came from, its original bytes, and what the stages made of it."""

    __slots__ = ("event_time", "headers", "key", "offset", "out_key", "partition", "raw", "topic", "value")

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
        self.key = key
        self.raw = raw
        self.headers = headers
        self.value: dict[str, Any] = {}
        self.event_time = 0
        self.out_key = key

    def __repr__(self) -> str:
        return f"Record({self.topic}/{self.partition}@{self.offset})"
