"""A real HTTP receiver for the webhook sink's tests: fails some requests, can go down."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Listens on 127.0.0.1:`port`; keeps every record POSTed (repeats included).

    `fail_share` of requests fail with a 503: half before the body is kept (the records are
    lost to this request), half after (the acknowledgement is lost, so the sender repeats
    them). `down(True)` closes the listening socket (connections are refused) until
    `down(False)` opens it again on the same port.
    """

    def __init__(self, fail_share: float = 0.0, seed: int = 1, refuse: int | None = None) -> None:
        self.fail_share = fail_share
        self.refuse = refuse
        """Answer every request with this status (and keep nothing), when set."""
        self.headers: list[dict[str, str]] = []
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.requests = 0
        self.failed = 0
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self._open(0)

    def _open(self, port: int) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with receiver.lock:
                    receiver.requests += 1
                    receiver.headers.append(dict(self.headers))
                    if receiver.refuse is not None:
                        self.send_response(receiver.refuse)
                        self.end_headers()
                        self.wfile.write(b"bad record: amount must be positive " + b"x" * 500)
                        return
                    roll = receiver.rng.random()
                    fail = roll < receiver.fail_share
                    keep = not fail or roll < receiver.fail_share / 2
                    if keep:
                        receiver.received += [(r["key"], r["value"]) for r in body["records"]]
                    if fail:
                        receiver.failed += 1
                self.send_response(503 if fail else 200)
                self.end_headers()
                self.wfile.write(b"try again later" if fail else b"ok")

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def down(self, down: bool) -> None:
        if down and self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        elif not down and self._server is None:
            self._open(self.port)

    def close(self) -> None:
        self.down(True)
