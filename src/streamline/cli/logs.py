"""Logging of long-running commands (`run`): level and format from the environment.

`STREAMLINE_LOG_LEVEL` (default INFO) and `STREAMLINE_LOG_FORMAT`: `text` (default,
`time LEVEL logger: message`) or `json`, one JSON object per line for log pipelines, with
`time` (ISO 8601, UTC), `level`, `logger` and `message`, plus `exception` when there is
one (python-json-logger). Known secret values are masked in both.
"""

from __future__ import annotations

import logging
import os
import sys

from streamline.errors import UsageError
from streamline.kafka.redaction import RedactingFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")


def log_formatter(kind: str) -> logging.Formatter:
    """The formatter of `STREAMLINE_LOG_FORMAT=kind`."""
    if kind == "text":
        return logging.Formatter(TEXT_FORMAT)
    if kind == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "exc_info": "exception",
            },
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    raise UsageError(f"STREAMLINE_LOG_FORMAT is {kind!r}: use one of {', '.join(FORMATS)}")


def configure_logging() -> None:
    """Root logging to stderr, in the level and format the environment asks for."""
    formatter = log_formatter(os.environ.get("STREAMLINE_LOG_FORMAT", "text").strip().lower())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(os.environ.get("STREAMLINE_LOG_LEVEL", "INFO").upper())
