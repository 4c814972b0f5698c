"""User client settings that would silently break exactly-once are refused before connecting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streamline.errors import UsageError
from streamline.kafka.settings import require_exactly_once_safe
from tests.helpers import ROOT

EXACTLY_ONCE_TOPOLOGY = ROOT / "topologies" / "revenue-per-minute.yaml"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("isolation.level", "read_uncommitted"),
        ("enable.auto.commit", "true"),
        ("enable.idempotence", "false"),
        ("transactional.id", "shared-id"),
    ],
)
def test_a_setting_that_breaks_exactly_once_is_refused_naming_it(setting: str, value: str) -> None:
    with pytest.raises(UsageError) as refused:
        require_exactly_once_safe({"security.protocol": "SASL_SSL", setting: value})
    message = str(refused.value)
    assert message.startswith(f"{setting}={value} would break exactly-once")
    assert "STREAMLINE_KAFKA_" + setting.upper().replace(".", "_") in message
    assert "\n" not in message
    assert refused.value.exit_code == 2


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("isolation.level", "read_committed"),
        ("enable.auto.commit", "false"),
        ("enable.auto.commit", "False"),
        ("enable.idempotence", "true"),
    ],
)
def test_the_value_exactly_once_needs_anyway_is_accepted(setting: str, value: str) -> None:
    require_exactly_once_safe({setting: value})


def test_settings_that_do_not_touch_exactly_once_are_accepted() -> None:
    require_exactly_once_safe({"security.protocol": "SSL", "linger.ms": "20"})


def test_run_refuses_read_uncommitted_on_an_exactly_once_topology_before_connecting() -> None:
    # no broker listens on port 1: had `run` tried to connect, it would fail otherwise, later
    env = {
        **os.environ,
        "STREAMLINE_KAFKA_ISOLATION_LEVEL": "read_uncommitted",
        "STREAMLINE_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    done = subprocess.run(
        [sys.executable, "-m", "streamline", "run", str(EXACTLY_ONCE_TOPOLOGY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: isolation.level=read_uncommitted would break exactly-once")
    assert "STREAMLINE_KAFKA_ISOLATION_LEVEL" in lines[0]
    assert done.stdout == ""
