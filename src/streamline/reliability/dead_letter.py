"""Dead-letter, retry and late records: the original bytes with headers that say what went wrong."""

from __future__ import annotations

import time
from dataclasses import dataclass

Headers = list[tuple[str, bytes]]

# error types (streamline.error.type)
DECODE = "decode"
SCHEMA = "schema"
EVENT_TIME = "event_time"
VALIDATION = "validation"
MAP = "map"
SINK = "sink"
LATE = "late"

MAX_MESSAGE = 2000
FAILURE_HEADER_KEYS = frozenset(
    {
        "streamline.error.type",
        "streamline.error.message",
        "streamline.error.stage",
        "streamline.error.rule",
        "streamline.attempts",
        "streamline.source.topic",
        "streamline.source.partition",
        "streamline.source.offset",
        "streamline.failed_at",
    }
)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one input record could not be processed."""

    error_type: str
    message: str
    stage: str
    rule: str | None = None
    attempts: int = 1


def failure_headers(
    failure: Failure,
    topic: str,
    partition: int,
    offset: int,
    original: Headers | None = None,
    now_ms: int | None = None,
) -> Headers:
    """The spec's `streamline.error.*` and `streamline.source.*` headers, after the record's own."""
    headers: Headers = [(k, v) for k, v in (original or []) if k not in FAILURE_HEADER_KEYS]
    headers += [
        ("streamline.error.type", failure.error_type.encode()),
        ("streamline.error.message", failure.message[:MAX_MESSAGE].encode("utf-8", "replace")),
        ("streamline.error.stage", failure.stage.encode()),
    ]
    if failure.rule is not None:
        headers.append(("streamline.error.rule", failure.rule.encode()))
    headers += [
        ("streamline.attempts", str(failure.attempts).encode()),
        ("streamline.source.topic", topic.encode()),
        ("streamline.source.partition", str(partition).encode()),
        ("streamline.source.offset", str(offset).encode()),
        (
            "streamline.failed_at",
            str(now_ms if now_ms is not None else int(time.time() * 1000)).encode(),
        ),
    ]
    return headers
