"""Runs `streamline ingest http` as a user would, in a subprocess, and posts to it with httpx."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from streamline.dev.broker import free_port
from tests.helpers import ROOT, STREAMLINE

ORDERS = ROOT / "examples" / "orders.jsonl"


def orders(n: int, prefix: str = "o") -> list[dict[str, Any]]:
    """`n` distinct valid orders, cycled from the example file with unique ids."""
    base = [json.loads(line) for line in ORDERS.read_text().splitlines()]
    return [dict(base[i % len(base)], order_id=f"{prefix}-{i:07d}") for i in range(n)]


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


class IngestServer:
    """One `streamline ingest http` process; `restart()` keeps its port and instance id."""

    def __init__(
        self, env: dict[str, str], log: Path, *args: str, tls_ca: Path | None = None
    ) -> None:
        self.port = free_port()
        # with --tls-cert/--tls-key: verify the server against this CA
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(tls_ca)) if tls_ca else True
        )
        self.scheme = "https" if tls_ca else "http"
        self.env = env
        self.log = log
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> IngestServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*STREAMLINE, "ingest", "http", "--port", str(self.port), *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.await_ready(timeout)
        return self

    def await_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"ingest exited {self.proc.returncode}: {self.log.read_text()}"
                )
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=1, verify=self.verify)
                if ready.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"ingest not ready in {timeout}s: {self.log.read_text()}")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0
