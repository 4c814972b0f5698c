"""The Schema Registry, through confluent-kafka's own `schema_registry` client.

Settings: the URL from `--schema-registry-url` or `STREAMLINE_SCHEMA_REGISTRY_URL`; every other
`STREAMLINE_SCHEMA_REGISTRY_<SETTING>` variable passes through as the client's `<setting>`
(`..._BASIC_AUTH_USER_INFO` -> `basic.auth.user.info`, `..._BEARER_AUTH_TOKEN`,
`..._SSL_CA_LOCATION`...), with secret values masked in every message and log line like
the Kafka secrets.

Writer schemas are looked up by id once each (the codecs cache them). An id the registry
does not know is a `schema` dead letter; a registry that cannot be reached mid-run makes the
lookup retry with backoff while processing waits, logging the stall and reporting it to
`on_stall` (the metrics), so nothing is dead-lettered or lost.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamline.errors import StreamlineError, UsageError
from streamline.kafka.redaction import redact, remember_secrets
from streamline.serde.codec import DecodeError
from streamline.serde.formats import schema_text
from streamline.serde.schema_store import Schema

ENV_PREFIX = "STREAMLINE_SCHEMA_REGISTRY_"
URL_VARIABLE = ENV_PREFIX + "URL"
BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0
NOT_FOUND = 404

log = logging.getLogger("streamline.registry")


class RegistryUnavailableError(StreamlineError):
    """The Schema Registry does not answer at start."""


def registry_settings(
    url: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """The client settings, or None when no registry URL is given."""
    env = os.environ if environ is None else environ
    url = url or env.get(URL_VARIABLE)
    if not url:
        return None
    settings = {
        key[len(ENV_PREFIX) :].lower().replace("_", "."): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key != URL_VARIABLE
    }
    settings["url"] = url
    remember_secrets(settings)
    return settings


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)


@dataclass
class Registry:
    """One registry client; `on_stall(waiting)` hears when lookups start and stop waiting."""

    settings: dict[str, str]
    on_stall: Callable[[bool, float], None] | None = None
    stopping: Callable[[], bool] | None = None
    """True once the process is asked to stop: a waiting lookup gives up."""
    _client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        # one attempt per lookup, bounded: the retrying (and its logging) is ours
        conf = {"max.retries": 0, "timeout": 5, **self.settings}
        for name in ("httpx", "httpx2"):  # a line per request at INFO otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            self._client = SchemaRegistryClient(conf)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"schema registry settings: {_reason(exc)}") from None

    @property
    def url(self) -> str:
        return self.settings["url"]

    def check_reachable(self) -> None:
        """Fails with one line naming the URL when the registry does not answer."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            self._client.get_subjects()
        except SchemaRegistryError as exc:
            if exc.http_status_code in (401, 403):
                raise UsageError(
                    f"schema registry {self.url} refused the credentials: {_reason(exc)}"
                ) from None
            raise RegistryUnavailableError(
                f"schema registry {self.url} is unreachable: {_reason(exc)}"
            ) from None
        except Exception as exc:
            raise RegistryUnavailableError(
                f"schema registry {self.url} is unreachable: {_reason(exc)}"
            ) from None

    def writer_schema(self, schema_id: int) -> Any:
        """The Avro schema of `schema_id`; waits, retrying, while the registry is away."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        delay = BACKOFF_INITIAL_S
        began = time.monotonic()
        started: float | None = None  # the lookup's start, once it has failed
        while True:
            try:
                schema = self._client.get_schema(schema_id)
                break
            except SchemaRegistryError as exc:
                if exc.http_status_code == NOT_FOUND:
                    self._resumed(started)
                    raise DecodeError(
                        f"unknown schema id {schema_id}: the registry at {self.url} has none",
                        "schema",
                    ) from None
                if exc.http_status_code in (401, 403):
                    raise UsageError(
                        f"schema registry {self.url} refused the credentials: {_reason(exc)}"
                    ) from None
                failure: BaseException = exc
            except Exception as exc:
                failure = exc
            if started is None:
                started = began
                log.warning(
                    "schema registry %s unreachable looking up schema id %d (%s): "
                    "processing waits and retries",
                    self.url,
                    schema_id,
                    _reason(failure),
                )
                if self.on_stall:
                    self.on_stall(True, 0.0)
            if self.stopping is not None and self.stopping():
                raise RegistryUnavailableError(
                    f"stopped while waiting for schema registry {self.url} "
                    f"(schema id {schema_id}); the waiting records are processed at the next start"
                )
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
        self._resumed(started)
        if schema.schema_type not in (None, "AVRO"):
            raise DecodeError(
                f"schema id {schema_id} is a {schema.schema_type} schema, not Avro", "schema"
            )
        try:
            return json.loads(schema.schema_str)
        except ValueError:
            return schema.schema_str  # a primitive type name

    def _resumed(self, started: float | None) -> None:
        if started is None:
            return
        waited = time.monotonic() - started
        log.warning("schema registry %s answers again after %.1fs", self.url, waited)
        if self.on_stall:
            self.on_stall(False, waited)

    def _avro(self, schema: Schema) -> Any:
        from confluent_kafka.schema_registry import Schema as RegistrySchema

        return RegistrySchema(schema_text(schema), "AVRO")

    def sink_schema_id(self, subject: str, schema: Schema, auto_register: bool) -> int:
        """The id `schema` is written under: registered now, or (no auto_register) found."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            if auto_register:
                return int(self._client.register_schema(subject, self._avro(schema)))
            return int(self._client.lookup_schema(subject, self._avro(schema)).schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == NOT_FOUND and not auto_register:
                raise UsageError(
                    f"schema {schema.name} is not registered under subject {subject} "
                    "(sink.auto_register is false): register it first"
                ) from None
            if exc.http_status_code == 409:
                reason = self.incompatibility(subject, schema) or _reason(exc)
                raise UsageError(
                    f"schema {schema.name} is incompatible with subject {subject}: {reason}"
                ) from None
            raise RegistryUnavailableError(
                f"schema registry {self.url}: cannot register {schema.name} under "
                f"{subject}: {_reason(exc)}"
            ) from None
        except Exception as exc:
            raise RegistryUnavailableError(
                f"schema registry {self.url} is unreachable: {_reason(exc)}"
            ) from None

    def incompatibility(self, subject: str, schema: Schema) -> str | None:
        """Why `schema` may not be registered under `subject` (its compatibility rule), or None."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        from streamline.serde.compatibility import first_incompatibility

        try:
            if self._client.test_compatibility(subject, self._avro(schema)):
                return None
            latest = self._client.get_latest_version(subject)
            rule = self._rule(subject)
        except SchemaRegistryError as exc:
            if exc.http_status_code == NOT_FOUND:
                return None  # a new subject: anything goes
            raise RegistryUnavailableError(f"schema registry {self.url}: {_reason(exc)}") from None
        except Exception as exc:
            raise RegistryUnavailableError(
                f"schema registry {self.url} is unreachable: {_reason(exc)}"
            ) from None
        old = json.loads(latest.schema.schema_str)
        reason = first_incompatibility(old, schema.definition, rule) or first_incompatibility(
            old, schema.definition, "FULL"
        )
        return reason or f"the registry refuses it under its {rule} rule"

    def _rule(self, subject: str) -> str:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return str(self._client.get_compatibility(subject))
        except SchemaRegistryError:
            return str(self._client.get_compatibility())


def open_registry(url: str | None, required: bool) -> Registry | None:
    """The registry of these settings, checked reachable; None when none is given.

    `required` (a `confluent-avro` topic): no URL is a usage error naming the settings.
    """
    settings = registry_settings(url)
    if settings is None:
        if required:
            raise UsageError(
                "format confluent-avro needs a schema registry: give --schema-registry-url "
                f"or {URL_VARIABLE}"
            )
        return None
    registry = Registry(settings)
    registry.check_reachable()
    return registry


def confluent_sinks(topology: Any) -> list[str]:
    """The topic sinks in `confluent-avro` by name (`sink` for the one-sink shorthand)."""
    from streamline.topology.model import Sink

    return [
        name
        for name, sink in topology.outputs.items()
        if isinstance(sink, Sink) and sink.format == "confluent-avro"
    ]


def sink_incompatibility(registry: Registry, checked: Any) -> None:
    """A usage error, one line naming the field, when the schema of a `confluent-avro` topic
    sink (`sink`, or one of `sinks:`) breaks its subject's compatibility rule."""
    from streamline.serde.formats import subject_name

    topology = checked.topology
    for name in confluent_sinks(topology):
        sink = topology.outputs[name]
        schema = checked.sink_schema if topology.sinks is None else checked.sink_schemas[name]
        subject = subject_name(sink.subject_strategy, sink.topic, schema.name)
        reason = registry.incompatibility(subject, schema)
        if reason:
            raise UsageError(
                f"{topology.name}: sink schema {schema.name} is incompatible with "
                f"subject {subject}: {reason}"
            )
