"""The OpenAPI 3.1 document of the ingest API, served at `/openapi.json`."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_RECORD_ERROR = {
    "type": "object",
    "required": ["index", "field", "reason"],
    "properties": {
        "index": {"type": "integer", "description": "0-based position of the record in the body"},
        "field": {"type": "string", "description": "dotted field path; empty for the whole record"},
        "reason": {"type": "string"},
    },
}


def _answer(description: str, schema: dict[str, Any], retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if retry_after:
        out["headers"] = {
            "Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}
        }
    return out


def openapi_document(topic: str, schema_name: str, max_body_bytes: int) -> dict[str, Any]:
    """The document for a server writing to `topic` with records of `schema_name`."""
    error = {"$ref": "#/components/schemas/Error"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamline ingest",
            "version": "1",
            "description": (
                f"Validates records against {schema_name} and writes them to {topic}, "
                "all or nothing per request, in one Kafka transaction."
            ),
        },
        "paths": {
            "/v1/topics/{topic}": {
                "post": {
                    "operationId": "ingest",
                    "summary": "Write records to a topic",
                    "parameters": [
                        {
                            "name": "topic",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": [topic]},
                        },
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 200},
                            "description": "A retry with the same key within the window is not written again.",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "description": f"At most {max_body_bytes} bytes.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"type": "object"},
                                        {"type": "array", "items": {"type": "object"}},
                                    ]
                                }
                            },
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "200": _answer(
                            "Every record was acknowledged by the broker (or the key was seen before).",
                            {"$ref": "#/components/schemas/Accepted"},
                        ),
                        "400": _answer(
                            "At least one record is invalid; nothing was written.",
                            {"$ref": "#/components/schemas/Invalid"},
                        ),
                        "401": _answer("No bearer token.", error),
                        "403": _answer("A bearer token that is not accepted.", error),
                        "404": _answer("Not the topic this server writes to.", error),
                        "413": _answer("The body is larger than the limit.", error),
                        "422": _answer("The Idempotency-Key was used with another body.", error),
                        "429": _answer("Over this token's rate limit.", error, retry_after=True),
                        "503": _answer(
                            "Not written: the broker is unreachable or the queue is full. "
                            "Retry with the same Idempotency-Key.",
                            error,
                            retry_after=True,
                        ),
                    },
                    "security": [{"bearer": []}],
                }
            },
            "/healthz": {
                "get": {"summary": "The process is up", "responses": {"200": {"description": "up"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "The broker is reachable and requests are accepted",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text format"}},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _ERROR,
                "RecordError": _RECORD_ERROR,
                "Invalid": {
                    "type": "object",
                    "required": ["error", "errors"],
                    "properties": {
                        "error": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/RecordError"},
                        },
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["topic", "records", "replayed"],
                    "properties": {
                        "topic": {"type": "string"},
                        "records": {"type": "integer"},
                        "replayed": {
                            "type": "boolean",
                            "description": "true when the Idempotency-Key was seen before",
                        },
                    },
                },
            },
        },
    }
