"""Dead-letter, retry and late records: the original bytes with headers that say what went wrong."""

from __future__ import annotations

import time
from dataclasses import dataclass

from streamline.headers import (
    ATTEMPTS,
    ERROR_FIELD,
    ERROR_MESSAGE,
    ERROR_RULE,
    ERROR_STAGE,
    ERROR_TYPE,
    FAILED_AT,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
)

Headers = list[tuple[str, bytes]]

# error types (streamline.error.type)
DECODE = "decode"
SCHEMA = "schema"
EVENT_TIME = "event_time"
VALIDATION = "validation"
MAP = "map"
SINK = "sink"
LATE = "late"
INTEGRITY = "integrity"  # the value bytes don't match their streamline.checksum header
CIRCUIT_OPEN = (
    "circuit_open"  # a map's circuit was open: no call, the record waits in the retry topic
)

MAX_MESSAGE = 2000
FAILURE_HEADER_KEYS = frozenset(
    {
        ERROR_TYPE,
        ERROR_MESSAGE,
        ERROR_STAGE,
        ERROR_RULE,
        ERROR_FIELD,
        ATTEMPTS,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        FAILED_AT,
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
    field: str | None = None
    """The path of the field that does not fit, for a `schema` failure."""
    retry_after_ms: int = 0  # circuit_open: when the circuit may let calls through again


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
        (ERROR_TYPE, failure.error_type.encode()),
        (ERROR_MESSAGE, failure.message[:MAX_MESSAGE].encode("utf-8", "replace")),
        (ERROR_STAGE, failure.stage.encode()),
    ]
    if failure.rule is not None:
        headers.append((ERROR_RULE, failure.rule.encode()))
    if failure.field is not None:
        headers.append((ERROR_FIELD, failure.field.encode()))
    headers += [
        (ATTEMPTS, str(failure.attempts).encode()),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (
            FAILED_AT,
            str(now_ms if now_ms is not None else int(time.time() * 1000)).encode(),
        ),
    ]
    return headers
