"""STREAMLINE_LOG_FORMAT=json: one JSON object per log line, secrets masked; text stays as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streamline.cli.logs import log_formatter
from streamline.errors import UsageError
from tests.helpers import ROOT

SCRIPT = """
import logging
from streamline.cli.logs import configure_logging
from streamline.kafka.redaction import remember_secrets
remember_secrets({"sasl.password": "hunter2-secret"})
configure_logging()
log = logging.getLogger("streamline.runtime")
log.info("assigned %d partitions", 3)
log.debug("not shown at INFO")
log.warning("password is hunter2-secret")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("the loop failed")
"""


def run_logging(fmt: str) -> list[str]:
    env = {**os.environ, "STREAMLINE_LOG_FORMAT": fmt, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def test_json_log_lines() -> None:
    lines = run_logging("json")
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("INFO", "streamline.runtime", "assigned 3 partitions"),
        ("WARNING", "streamline.runtime", "password is ***"),
        ("ERROR", "streamline.runtime", "the loop failed"),
    ]
    assert all(r["time"][:2] == "20" and "T" in r["time"] for r in records)
    assert "ZeroDivisionError" in records[2]["exception"]


def test_text_stays_the_default_format() -> None:
    lines = run_logging("text")
    assert lines[0].endswith(" INFO streamline.runtime: assigned 3 partitions")
    assert "hunter2-secret" not in "\n".join(lines)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(UsageError, match="STREAMLINE_LOG_FORMAT is 'xml': use one of text, json"):
        log_formatter("xml")
