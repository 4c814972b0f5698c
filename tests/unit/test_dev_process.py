"""Stopping the dev broker's and dev registry's background processes (one helper for both)."""

from __future__ import annotations

import subprocess
import sys
import time

from streamline.dev.process import pid_alive, stop_process

IGNORES_TERM = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)
OBEYS_TERM = "import sys, time; print('ready', flush=True); time.sleep(60)"


def _started(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_a_process_that_obeys_sigterm_stops_gracefully() -> None:
    proc = _started(OBEYS_TERM)
    started = time.monotonic()
    assert stop_process(proc.pid, timeout=10.0) is True
    assert proc.wait(timeout=5) == -15  # SIGTERM, not SIGKILL
    assert time.monotonic() - started < 5.0
    assert not pid_alive(proc.pid)


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    proc = _started(IGNORES_TERM)
    started = time.monotonic()
    assert stop_process(proc.pid, timeout=0.3) is True
    assert proc.wait(timeout=5) == -9  # SIGKILL
    assert time.monotonic() - started >= 0.3


def test_stopping_a_process_that_does_not_run_says_so() -> None:
    proc = _started(OBEYS_TERM)
    proc.kill()
    proc.wait(timeout=5)
    assert stop_process(proc.pid, timeout=0.3) is False
