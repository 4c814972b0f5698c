"""HTTP ingest: records POSTed to `/v1/topics/{topic}`, validated, produced in one transaction.

`body` turns a request body into encoded records or per-record errors (pure); `limits` holds
the bearer-token check and the per-token rate limit (pure); `keys` is the Kafka-backed
Idempotency-Key store; `writer` owns the transactional producer that commits requests and
their keys together; `app` is the ASGI application that wires them (`create_app`), and
`openapi` the document it serves at `/openapi.json`.
"""

from __future__ import annotations

from streamline.ingest.app import IngestSettings, create_app

__all__ = ["IngestSettings", "create_app"]
