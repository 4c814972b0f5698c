"""`streamline demo` (what `make demo` runs) against the real broker, as a user runs it."""

from __future__ import annotations

import re

import pytest

from tests.helpers import run_cli

pytestmark = pytest.mark.kafka


def test_demo_processes_its_input_and_prints_the_windows(bootstrap_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # its input is produced in one transaction, so the topic ends with a commit marker after
    # the last record: the demo must wait for the last record, not for the end offset
    env = dict(bootstrap_env, STREAMLINE_HOME=str(tmp_path))
    done = run_cli("demo", env=env, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "produced 200 records" in output
    assert "consumer lag on orders: 0" in output
    found = re.search(r"revenue-per-minute: (\d+) records", output)
    assert found is not None and int(found.group(1)) > 0, output
