"""The ingest ASGI application (Starlette): routes, auth, limits, and the answer to each request.

`create_app(settings, connection, store)` returns an app that can run under uvicorn (as
`streamline ingest http` does) or be mounted in another ASGI application. Its lifespan
creates the keys topic when missing, initialises the transactional writer (fencing an
earlier instance with the same id), reads the committed Idempotency-Keys back, and only
then serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamline.errors import UsageError
from streamline.ingest.body import BodyParser, Encoded, body_format
from streamline.ingest.keys import (
    DEFAULT_WINDOW_MS,
    KeyIndex,
    KeyTail,
    ensure_keys_topic,
    key_bytes,
)
from streamline.ingest.limits import Authenticator, RateLimiter
from streamline.ingest.metrics import IngestMetrics
from streamline.ingest.openapi import openapi_document
from streamline.ingest.writer import Pending, TransactionalWriter, Unavailable, Written
from streamline.kafka.admin import require_topics
from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec, SchemaStore

log = logging.getLogger("streamline.ingest")
MAX_KEY_LENGTH = 200


@dataclass
class IngestSettings:
    """What `streamline ingest http` is told; every limit has a default."""

    topic: str
    schema: str
    format: str = "json"  # for bodies whose Content-Type names no format
    key_field: str | None = None
    tokens: tuple[str, ...] = ()
    rate_limit: float | None = None  # requests a second per token
    rate_burst: float | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    max_pending_records: int = 100_000
    idempotency_window_ms: int = DEFAULT_WINDOW_MS
    transactional_id: str = "streamline-ingest"
    checksum: bool = False  # stamp streamline.checksum (sha256 of each value)


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


class _Ingest:
    """The request handlers and the parts they share."""

    def __init__(
        self, settings: IngestSettings, connection: Connection, store: SchemaStore
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.schema = store.get(settings.schema)
        if settings.key_field is not None and settings.key_field not in self.schema.fields:
            raise UsageError(
                f"--key-field {settings.key_field} is not a field of {self.schema.name}"
            )
        self.parser = BodyParser(self.schema, AvroCodec(store, self.schema), settings.key_field)
        self.auth = Authenticator(list(settings.tokens))
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        self.metrics = IngestMetrics()
        self.index = KeyIndex(settings.idempotency_window_ms)
        self.writer = TransactionalWriter(
            connection,
            self.index,
            settings.transactional_id,
            settings.max_pending_records,
            settings.checksum,
        )
        self.tail: KeyTail | None = None
        self.in_flight: dict[bytes, asyncio.Future[Written]] = {}
        self.openapi = openapi_document(settings.topic, self.schema.name, settings.max_body_bytes)

    def start(self) -> None:
        require_topics(self.connection, [self.settings.topic])
        ensure_keys_topic(self.connection, self.settings.idempotency_window_ms)
        self.writer.start()  # fences an earlier instance first, so its open transaction is aborted
        self.tail = KeyTail(self.connection, self.index)
        loaded = self.tail.load()
        self.tail.start()
        log.info("ingest ready: %s idempotency keys loaded", loaded)

    def stop(self) -> None:
        self.writer.close()
        if self.tail is not None:
            self.tail.close()

    async def ingest(self, request: Request) -> Response:
        started = time.monotonic()
        response = await self._ingest(request)
        self.metrics.requests.labels(str(response.status_code)).inc()
        self.metrics.latency.observe(time.monotonic() - started)
        return response

    async def _ingest(self, request: Request) -> Response:
        status, token = self.auth.check(request.headers.get("authorization"))
        if status == 401:
            return _error(401, "a bearer token is required", **{"WWW-Authenticate": "Bearer"})
        if status == 403:
            return _error(403, "the bearer token is not accepted")
        topic = request.path_params["topic"]
        if topic != self.settings.topic:
            return _error(404, f"this server writes to {self.settings.topic}, not {topic}")
        wait = self.limiter.retry_after(token)
        if wait:
            return _error(429, "rate limit exceeded", **{"Retry-After": str(wait)})
        if not self.writer.ready:  # refuse before reading: nothing is buffered while down
            return _error(503, "the Kafka broker is not reachable", **{"Retry-After": "5"})
        body = await self._read_body(request)
        if body is None:
            return _error(413, f"the body is larger than {self.settings.max_body_bytes} bytes")
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
            return _error(400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
        fmt = body_format(request.headers.get("content-type"), self.settings.format)
        parsed = self.parser.parse(body, fmt)
        if not isinstance(parsed, Encoded):
            return JSONResponse(
                {
                    "error": "invalid records; nothing was written",
                    "errors": [e.as_json() for e in parsed],
                },
                status_code=400,
            )
        digest = hashlib.sha256(body).hexdigest()
        key = key_bytes(topic, idempotency_key) if idempotency_key is not None else None
        try:
            written = await self._write(topic, parsed, key, digest)
        except Unavailable as exc:
            return _error(503, str(exc), **{"Retry-After": str(exc.retry_after)})
        if written.replayed and written.body_sha256 != digest:
            return _error(422, "this Idempotency-Key was used with another body")
        if not written.replayed:
            self.metrics.records.labels(topic).inc(written.records)
            self.metrics.bytes.labels(topic).inc(len(body))
        return JSONResponse(
            {"topic": topic, "records": written.records, "replayed": written.replayed}
        )

    async def _write(self, topic: str, parsed: Encoded, key: bytes | None, digest: str) -> Written:
        if key is None:
            return await asyncio.wrap_future(
                self.writer.submit(Pending(topic, parsed.records, None, digest))
            )
        while key in self.in_flight:  # the same key is being written: wait for its outcome
            with suppress(Unavailable):
                await asyncio.shield(self.in_flight[key])
        seen = self.index.get(key)
        if seen is not None:
            return Written(seen.records, True, seen.body_sha256)
        future = asyncio.wrap_future(
            self.writer.submit(Pending(topic, parsed.records, key, digest))
        )
        self.in_flight[key] = future
        try:
            return await future
        finally:
            del self.in_flight[key]

    async def _read_body(self, request: Request) -> bytes | None:
        """The body, or None as soon as it is larger than the limit."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def metrics_page(self, _request: Request) -> Response:
        self.metrics.ready.set(1 if self.writer.ready else 0)
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        if self.writer.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "the Kafka broker is not reachable"}, status_code=503)

    async def openapi_page(self, _request: Request) -> Response:
        return JSONResponse(self.openapi)


def create_app(settings: IngestSettings, connection: Connection, store: SchemaStore) -> Starlette:
    """The ingest ASGI app for `settings`; see the module docstring."""
    ingest = _Ingest(settings, connection, store)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(ingest.start)
        try:
            yield
        finally:
            await asyncio.to_thread(ingest.stop)

    routes: list[Any] = [
        Route("/v1/topics/{topic}", ingest.ingest, methods=["POST"]),
        Route("/metrics", ingest.metrics_page),
        Route("/healthz", ingest.healthz),
        Route("/readyz", ingest.readyz),
        Route("/openapi.json", ingest.openapi_page),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
