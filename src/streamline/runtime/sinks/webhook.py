"""The webhook sink: records POSTed as JSON batches, at least once, with idempotency keys.

Records routed to a webhook are POSTed while their batch is processed, before the
transaction that holds their input offsets commits: the offsets commit only after the
receiver acknowledged (any 2xx). A crash between the acknowledgement and the commit sends
the records again, so each carries an idempotency key, the `topic-partition-offset` of
its input record, and the receiver drops keys it has seen.

The body is `{"records": [{"key": "orders-0-42", "value": {...}}, ...]}` with at most
`batch` records (shaped to the sink's schema), with the configured headers. A failed
POST (a connection error, a timeout, a 408, 429 or 5xx) is tried again after the backoff,
up to `retry.attempts` calls; a batch that still fails, or is refused with another 4xx,
becomes dead letters (type `sink`, stage `sinks.<name>`) whose message has the HTTP
status and the start of the response body.

With `circuit`, the POSTs go through a circuit breaker (`runtime/circuit.py`): a failed
POST (connection error, timeout, 408, 429, 5xx) counts as a failure, any other answer as
a success. Once it opens, no POST goes out for `open_for`: the batches (and the retries
of the batch in which it opened) become dead letters at once, saying the circuit is
open, so a down endpoint does not hold every batch for its retries into the transaction
timeout. Then `probes` POSTs go through; as many successes close it again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamline.reliability.dead_letter import SINK, Failure
from streamline.reliability.retry import RetryPolicy
from streamline.runtime.circuit import STATE_VALUES, circuit_of
from streamline.runtime.record import Record
from streamline.serde.fit import RecordFit

if TYPE_CHECKING:
    from streamline.observability.metrics import Metrics
from streamline.serde.schema_store import Schema
from streamline.topology.model import WebhookSpec

log = logging.getLogger("streamline.runtime")

BODY_EXCERPT = 200
_RETRIED = frozenset({408, 429})


def idempotency_key(record: Record) -> str:
    """`topic-partition-offset` of the input record (its first source, for a retried one)."""
    topic, partition, offset = record.origin()
    return f"{topic}-{partition}-{offset}"


class WebhookSender:
    """One webhook sink: POSTs batches, retries them, dead-letters what is refused."""

    def __init__(
        self,
        name: str,
        spec: WebhookSpec,
        schema: Schema,
        check: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.spec = spec
        self.fit = RecordFit(schema)
        self.check = check
        self.policy = RetryPolicy(
            attempts=spec.retry.attempts,
            initial_ms=spec.retry.backoff.initial,
            multiplier=spec.retry.backoff.multiplier,
            max_ms=spec.retry.backoff.max,
            jitter=spec.retry.backoff.jitter,
        )
        self._sleep = sleep
        import httpx  # here: a topology without webhooks does not pay for importing it

        self._http_error = httpx.HTTPError
        self._client = httpx.Client(
            timeout=spec.timeout / 1000,
            headers={"content-type": "application/json", **spec.headers},
        )
        self.posts = 0
        self.retries = 0
        self.stage = f"sinks.{name}"
        self.circuit = circuit_of(spec.circuit, self._circuit_moved, clock)
        self._moves: list[str] = []  # circuit transitions not yet in the metrics
        self._reported = False

    def add(self, records: list[Record], failed: Callable[[Record, Failure], None]) -> int:
        """POSTs the records in batches; returns how many the receiver acknowledged."""
        stage = self.stage
        ready: list[tuple[Record, dict[str, Any]]] = []
        for record in records:
            if self.check:
                misfit = self.fit.misfit(record.value)
                if misfit is not None:
                    message = f"field {misfit[0]}: {misfit[1]}"
                    failed(record, Failure(SINK, message, stage, field=misfit[0] or None))
                    continue
            ready.append((record, self.fit.shape(record.value)))
        sent = 0
        size = self.spec.batch
        for start in range(0, len(ready), size):
            chunk = ready[start : start + size]
            refused = self._post(chunk)
            if refused is None:
                sent += len(chunk)
                continue
            for record, _value in chunk:
                failed(record, Failure(SINK, refused, stage, attempts=self.policy.attempts))
        return sent

    def _post(self, chunk: list[tuple[Record, dict[str, Any]]]) -> str | None:
        """None once acknowledged; else why the batch failed after its retries."""
        body = json.dumps(
            {"records": [{"key": idempotency_key(r), "value": v} for r, v in chunk]},
            default=str,
            ensure_ascii=False,
        ).encode()
        attempt = 1
        circuit = self.circuit
        problem = ""
        while True:
            if circuit is not None and not circuit.allow():
                return self._open_circuit(len(chunk), problem)
            self.posts += 1
            try:
                response = self._client.post(self.spec.url, content=body)
                if 200 <= response.status_code < 300:
                    if circuit is not None:
                        circuit.record(True)
                    return None
                problem = f"HTTP {response.status_code}: {response.text[:BODY_EXCERPT]}"
                final = response.status_code < 500 and response.status_code not in _RETRIED
            except self._http_error as exc:
                problem, final = f"{type(exc).__name__}: {exc}"[:BODY_EXCERPT], False
            if circuit is not None:
                circuit.record(final)  # a refusal of the records is an answer: not a failure
            if final or attempt >= self.policy.attempts:
                log.warning("webhook %s: batch of %d failed: %s", self.name, len(chunk), problem)
                return problem
            self.retries += 1
            self._sleep(self.policy.backoff_ms(attempt) / 1000)
            attempt += 1

    def _open_circuit(self, n: int, last: str) -> str:
        """Why a batch is not POSTed: the circuit is open (and the last failure, if any)."""
        assert self.circuit is not None
        reopens = self.circuit.reopens_in_s()
        problem = f"circuit open: {self.spec.url} mostly fails; POSTs resume in {reopens:.1f} s"
        if last:
            problem = f"{problem}; last: {last}"[:BODY_EXCERPT]
        log.warning("webhook %s: batch of %d not sent: %s", self.name, n, problem)
        return problem

    def _circuit_moved(self, to: str) -> None:
        log.warning("%s: the circuit is %s", self.stage, to.replace("_", "-"))
        self._moves.append(to)

    def report(self, metrics: Metrics) -> None:
        """The circuit's state and changes since the last report, as a map's circuit's."""
        if self.circuit is None:
            return
        if not self._reported:
            self._reported = True
            metrics.calls.circuit_state(self.stage, STATE_VALUES[self.circuit.state])
        for to in self._moves:
            metrics.calls.circuit(self.stage, to, STATE_VALUES[to])
        self._moves.clear()

    def close(self) -> None:
        self._client.close()
