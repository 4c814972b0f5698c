"""The HTTP endpoint of a running topology: ``/metrics`` for Prometheus, and the probes.

``MetricsServer`` serves one ``Metrics`` on a background daemon thread, so the
processing loop never waits on a scrape:

- ``/metrics``: the exposition, in the format the scraper's ``Accept`` header asks
  for (Prometheus text, or OpenMetrics).
- ``/healthz``: 200 ``ok`` while ``healthy()`` says the processing loop is alive and
  making progress, else 503; a liveness probe restarts the process on 503.
- ``/readyz``: 200 ``ready`` while ``ready()`` is true (by default what
  ``Metrics.set_ready`` last said), else 503 with a short reason. Asked for JSON
  (``Accept: application/json`` or ``?format=json``), the body is
  ``{"ready": ..., "circuits": {stage: state}}`` with the same status: an open
  circuit is shown there, and is neither a readiness nor a liveness failure.
- anything else: 404.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

from prometheus_client.exposition import choose_encoder

from streamline.errors import StreamlineError
from streamline.observability.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_PORT: Final[int] = 9400
"""Port of the metrics endpoint unless ``streamline run --metrics-port`` says otherwise."""

Check = Callable[[], bool]
"""A probe: returns whether the process is healthy (or ready)."""
Details = Callable[[], dict[str, Any]]
"""More for `/readyz`'s JSON body (e.g. `{"circuits": {stage: state}}`)."""


class _Server(ThreadingHTTPServer):
    """The socket server, carrying what the request handler needs to answer."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Metrics,
        ready: Check,
        healthy: Check,
        details: Details | None = None,
    ) -> None:
        self.details = details
        self.metrics = metrics
        self.ready = ready
        self.healthy = healthy
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can block on DNS; nothing needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: object, client_address: object) -> None:
        # A scraper hanging up mid-response is not worth a traceback on stderr.
        log.debug("metrics request from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    """The socket server on an IPv6 host."""

    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Answers one request to the metrics endpoint."""

    server: _Server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            encode, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, encode(self.server.metrics.registry), content_type)
        elif path == "/healthz":
            self._probe(
                self.server.healthy,
                "ok",
                "unhealthy: the processing loop is not running, or has made no progress "
                "for longer than its stall timeout",
            )
        elif path == "/readyz" and self._wants_json():
            self._readiness_json()
        elif path == "/readyz":
            self._probe(self.server.ready, "ready", "not ready: starting, restoring or stopping")
        else:
            self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

    def _probe(self, check: Check, ok: str, failing: str) -> None:
        try:
            passed = check()
        except Exception as e:  # a broken check must answer 503, not drop the connection
            passed, failing = False, f"{failing} (check raised {type(e).__name__}: {e})"
        if passed:
            self._reply(200, f"{ok}\n".encode())
        else:
            self._reply(503, f"{failing}\n".encode())

    def _wants_json(self) -> bool:
        return "application/json" in self.headers.get("Accept", "") or "format=json" in (
            urlsplit(self.path).query
        )

    def _readiness_json(self) -> None:
        """`/readyz` as JSON: `{"ready": ..., "circuits": {stage: state}}`; same status as text."""
        try:
            ready = bool(self.server.ready())
        except Exception:
            ready = False
        body = {"ready": ready, **(self.server.details() if self.server.details else {})}
        self._reply(200 if ready else 503, (json.dumps(body) + "\n").encode(), "application/json")

    def _reply(
        self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silences the per-request line BaseHTTPRequestHandler writes to stderr."""


class MetricsServer:
    """Serves ``metrics`` and the health probes over HTTP on a background daemon thread.

    ``port=0`` picks a free port; ``port`` tells which one after ``start()``.
    ``ready`` defaults to ``metrics.is_ready``; ``healthy`` defaults to always
    true (a process that answers is alive). Use as a context manager, or call
    ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        metrics: Metrics,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        ready: Check | None = None,
        healthy: Check | None = None,
        details: Details | None = None,
    ) -> None:
        self._details = details
        self.metrics = metrics
        self.host = host
        self._requested_port = port
        self._ready: Check = ready if ready is not None else (lambda: metrics.is_ready)
        self._healthy: Check = healthy if healthy is not None else (lambda: True)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port being served (the one picked, if 0 was asked), or the requested one."""
        return self._server.server_port if self._server is not None else self._requested_port

    @property
    def url(self) -> str:
        """The base URL of the server, e.g. ``http://127.0.0.1:9400``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Binds the port and starts serving; raises StreamlineError if the port is taken."""
        if self._server is not None:
            raise RuntimeError("MetricsServer is already started")
        address = f"{self.host}:{self._requested_port}"
        server_class = _Server6 if ":" in self.host else _Server
        try:
            server = server_class(
                (self.host, self._requested_port),
                self.metrics,
                self._ready,
                self._healthy,
                self._details,
            )
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise StreamlineError(
                    f"cannot serve metrics on {address}: the port is already in use. Stop the "
                    "process holding it, or choose another port (--metrics-port N; 0 picks a "
                    "free one)."
                ) from e
            raise StreamlineError(f"cannot serve metrics on {address}: {e.strerror or e}") from e
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"streamline-metrics-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops serving and releases the port; does nothing if not started."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
