"""A real HTTP dependency for enrichment tests: an aiohttp server on its own thread.

`GET /enrich/{order_id}?key=K` answers `{"tier": ...}` after `latency` seconds. The test
switches it `down` (every call hangs until the client's timeout, as a dead host would),
makes calls for some order ids hang (`hang_prefix`) or every call answer 503
(`failing`), and reads back every call it received, in arrival order.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

TIERS = ("bronze", "silver", "gold")


def tier_of(order_id: str) -> str:
    """What the dependency answers for an order (the tests' oracle computes it the same way)."""
    return TIERS[hashlib.sha256(order_id.encode()).digest()[0] % len(TIERS)]


@dataclass
class Call:
    order_id: str
    key: str
    started: float
    finished: float = 0.0


@dataclass
class Dependency:
    """The server and the knobs a test turns while it runs."""

    latency: float = 0.02
    down: bool = False
    hang_prefix: str | None = None
    """Calls for order ids starting with this hang (a dependency down for some keys only)."""
    failing: bool = False
    calls: list[Call] = field(default_factory=list)
    inflight: int = 0
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Dependency:
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the test dependency did not start")
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/enrich/{order_id}", self._enrich)
        app.router.add_get("/customers/{order_id}", self._enrich)  # examples/enrich_http.py
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket()  # port 0: bound here, so no other process can take it first
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, backlog=4096).start()

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Dependency:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def _enrich(self, request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        call = Call(order_id, request.query.get("key", ""), time.monotonic())
        self.calls.append(call)
        self.inflight += 1
        try:
            if self.down or (self.hang_prefix and order_id.startswith(self.hang_prefix)):
                await asyncio.sleep(3600)  # the client's timeout ends it
            if self.latency:
                await asyncio.sleep(self.latency)
            call.finished = time.monotonic()
            if self.failing:
                return web.Response(text="unavailable", status=503)
            return web.json_response({"tier": tier_of(order_id)})
        finally:
            self.inflight -= 1
