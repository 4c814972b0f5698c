"""The stateless stages: decode, event time, validate, filter, map, key_by, sink encoding.

Each stage takes a batch of records and returns the records that go on; a record
that fails is handed to `failed(record, Failure)` (it becomes a dead letter) and a
record that is dropped on purpose is counted through `dropped(stage, reason)`.
Working on whole batches keeps per-record overhead low and lets the runtime time
each stage once per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from streamline.headers import CHECKSUM
from streamline.observability.metrics import Metrics
from streamline.reliability.checksum import value_checksum
from streamline.reliability.dead_letter import (
    DECODE,
    EVENT_TIME,
    INTEGRITY,
    MAP,
    SCHEMA,
    VALIDATION,
    Failure,
)
from streamline.reliability.retry import AttemptsExhausted, RetryPolicy, call_with_retries
from streamline.runtime.record import Record
from streamline.serde import AvroCodec, DecodeError
from streamline.serde.convert import parse_timestamp_ms
from streamline.serde.fit import RecordFit
from streamline.serde.formats import Codec

Failed = Callable[[Record, Failure], None]
Dropped = Callable[[str, str, int], None]


class Evaluable(Protocol):
    """A compiled expression (CEL) evaluated against a record's fields."""

    def evaluate(self, record: dict[str, Any]) -> Any: ...


class Stage(Protocol):
    """One step of the chain; `name` is its path in the topology file (`stages[2].filter`)."""

    name: str

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]: ...


class Decode:
    """Bytes to a record of the source schema; undecodable bytes become dead letters."""

    def __init__(self, name: str, codecs: dict[str, Codec]) -> None:
        self.name = name
        self.codecs = codecs
        # every topic read as one Avro schema: its generated reader takes the whole batch
        avro = [c for c in codecs.values() if type(c) is AvroCodec]
        one_schema = len({c.schema.fingerprint for c in avro}) == 1
        self.read_batch = avro[0].read_batch if one_schema and len(avro) == len(codecs) else None

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        codecs, name = self.codecs, self.name

        def decoded(record: Record) -> bool:
            try:
                record.value = codecs[record.topic].decode(record.raw)
                return True
            except DecodeError as exc:
                kind = exc.kind if exc.kind != "decode" else DECODE
                failed(record, Failure(kind, str(exc), name))
                return False

        if self.read_batch is not None:  # the rest (other writer schemas, bad bytes) one by one
            return self.read_batch(batch, decoded)
        return [record for record in batch if decoded(record)]


class EventTime:
    """Reads the event time (epoch ms) from a field holding a long or an ISO-8601 string."""

    def __init__(self, name: str, field: str) -> None:
        self.name = name
        self.field = field

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        out = []
        field = self.field
        for record in batch:
            value = record.value.get(field)
            if isinstance(value, int) and not isinstance(value, bool):
                record.event_time = value
            else:
                try:
                    record.event_time = parse_timestamp_ms(value)  # type: ignore[arg-type]
                except (TypeError, ValueError, AttributeError):
                    failed(
                        record,
                        Failure(EVENT_TIME, f"event time field {field} holds {value!r}", self.name),
                    )
                    continue
            out.append(record)
        return out


class Validate:
    """CEL rules: a broken `error` rule is a dead letter (or a counted drop); a broken `warn`
    rule keeps the record and names the rule in its `warnings`.

    Error rules run first, in order, up to the first broken one; a record that passes
    them runs every warn rule. Failures per (rule, severity), records seen and records
    that passed every rule are kept until `report` hands them to the metrics (once per batch).
    """

    def __init__(
        self,
        name: str,
        rules: list[tuple[str, Evaluable]],
        dead_letter: bool,
        warn_rules: list[tuple[str, Evaluable]] | None = None,
    ) -> None:
        self.name = name
        self.rules = rules
        self.warn_rules = warn_rules or []
        self.dead_letter = dead_letter
        self.failures: dict[tuple[str, str], int] = {}
        self.seen = 0
        self.passed = 0

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        out = []
        rules = [(name, _evaluator(expr)) for name, expr in self.rules]
        warn_rules = self.warn_rules
        failures = self.failures
        warned = 0
        for record in batch:
            broken = None
            for rule_name, evaluate in rules:
                try:
                    if evaluate(record.value) is True:
                        continue
                    message = f"rule {rule_name} is false"  # built only for a broken rule
                except Exception as exc:
                    message = f"rule {rule_name} failed: {exc}"
                broken = (rule_name, message)
                break
            if broken is not None:
                slot = (broken[0], "error")
                failures[slot] = failures.get(slot, 0) + 1
                if self.dead_letter:
                    failed(record, Failure(VALIDATION, broken[1], self.name, rule=broken[0]))
                else:
                    dropped(self.name, "validation", 1)
                continue
            out.append(record)
        if warn_rules:  # a second pass, so a stage without warn rules pays nothing for them
            for record in out:
                broken_warns = [n for n, expr in warn_rules if not _holds(expr, record.value)]
                if broken_warns:
                    record.warnings = broken_warns
                    warned += 1
                    for rule_name in broken_warns:
                        slot = (rule_name, "warn")
                        failures[slot] = failures.get(slot, 0) + 1
        self.seen += len(batch)
        self.passed += len(out) - warned
        return out

    def report(self, metrics: Metrics) -> None:
        """Hands the counts since the last report to the metrics."""
        metrics.quality.validated(self.name, self.failures, self.seen, self.passed)
        self.failures = {}
        self.seen = self.passed = 0


def _evaluator(expr: Evaluable) -> Callable[[dict[str, Any]], Any]:
    """`expr.evaluate` as one call per record, when the expression offers it (`Expression`)."""
    return getattr(expr, "evaluator", None) or expr.evaluate


def _holds(expr: Evaluable, value: dict[str, Any]) -> bool:
    try:
        return expr.evaluate(value) is True
    except Exception:
        return False


class VerifyChecksum:
    """Checks `streamline.checksum` against the value bytes of records from `topics`.

    A record without the header, or whose bytes hash otherwise, is an `integrity` dead
    letter. Only in the chain when a source sets `verify_checksum: true`.
    """

    def __init__(self, name: str, topics: frozenset[str]) -> None:
        self.name = name
        self.topics = topics

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        out = []
        topics = self.topics
        for record in batch:
            if record.topic in topics:
                stamped = record.header(CHECKSUM)
                if stamped is None:
                    failed(record, Failure(INTEGRITY, f"no {CHECKSUM} header", self.name))
                    continue
                actual = value_checksum(record.raw)
                if stamped != actual:
                    failed(
                        record,
                        Failure(
                            INTEGRITY,
                            f"{CHECKSUM} is {stamped.decode('utf-8', 'replace')[:64]}, "
                            f"the value's sha256 is {actual.decode()}",
                            self.name,
                        ),
                    )
                    continue
            out.append(record)
        return out


class TrackNulls:
    """Counts, per listed field, the decoded records holding null there (`quality.track_nulls`)."""

    def __init__(self, name: str, fields: list[str]) -> None:
        self.name = name
        self.fields = fields
        self.nulls = dict.fromkeys(fields, 0)
        self.seen = 0

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        nulls = self.nulls
        for field in self.fields:
            nulls[field] += sum(1 for r in batch if r.value.get(field) is None)
        self.seen += len(batch)
        return batch

    def report(self, metrics: Metrics) -> None:
        """Hands the counts since the last report to the metrics."""
        for field, n in self.nulls.items():
            metrics.quality.nulls(field, n, self.seen)
        self.nulls = dict.fromkeys(self.fields, 0)
        self.seen = 0


class Filter:
    """Keeps the records for which the CEL expression is true; the others are counted drops."""

    def __init__(self, name: str, expr: Evaluable) -> None:
        self.name = name
        self.expr = expr

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        out = []
        evaluate = _evaluator(self.expr)
        for record in batch:
            try:
                keep = evaluate(record.value)
            except Exception as exc:
                failed(record, Failure("filter", f"filter failed: {exc}", self.name))
                continue
            if keep is True:
                out.append(record)
        if len(out) != len(batch):
            dropped(self.name, "filter", len(batch) - len(out))
        return out


class Map:
    """User code `dict -> dict | None`, retried in line; None drops, exhaustion dead-letters."""

    def __init__(
        self,
        name: str,
        fn: Callable[[dict[str, Any]], dict[str, Any] | None],
        policy: RetryPolicy,
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self.fn = fn
        self.policy = policy
        self.on_retry = on_retry
        self.progressed_at = 0.0  # when the last call returned or failed (the loop's liveness)
        self.retries = 0  # in-line retries since the last report

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        out = []
        fn, policy = self.fn, self.policy
        on_retry = self._retried
        now = time.monotonic
        for record in batch:
            try:
                result = call_with_retries(fn, record.value, policy, on_retry=on_retry)
                self.progressed_at = now()
            except AttemptsExhausted as exc:
                self.progressed_at = now()
                failed(record, Failure(MAP, str(exc), self.name, attempts=exc.attempts))
                continue
            if isinstance(result, dict):
                record.value = result
                out.append(record)
            else:
                not_a_record(self.name, record, result, failed, dropped)
        return out

    def _retried(self, attempt: int, error: BaseException) -> None:
        self.progressed_at = time.monotonic()
        self.retries += 1
        self.on_retry()

    def report(self, metrics: Metrics) -> None:
        """Counts the in-line retries since the last report in `streamline_retries_total`."""
        if self.retries:
            metrics.retry(self.name, self.retries)
            self.retries = 0


def not_a_record(
    stage: str, record: Record, result: object, failed: Failed, dropped: Dropped
) -> None:
    """A map's result that is not a dict: None drops the record, anything else fails it."""
    if result is None:
        dropped(stage, "map", 1)
    else:
        failed(
            record,
            Failure(MAP, f"returned {type(result).__name__}, expected dict or None", stage),
        )


class FitOutput:
    """After a typed map (`output:`): a result that is not a record of that schema is a
    `schema` dead letter of the map's stage naming the field; one that is goes on shaped
    to the schema. `name` (`stages[N].map.output`) times it; failures name the map."""

    def __init__(self, map_stage: str, fit: RecordFit) -> None:
        self.name = f"{map_stage}.output"
        self.map_stage = map_stage
        self.fit = fit

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        out = []
        fit = self.fit
        misfit_of, shape = fit.misfit, fit.shape
        for record in batch:
            misfit = misfit_of(record.value)
            if misfit is None:
                record.value = shape(record.value)
                out.append(record)
                continue
            path, problem = misfit
            where = f"field {path}: " if path else ""
            failed(
                record,
                Failure(
                    SCHEMA,
                    f"the result is not a {fit.schema.name}: {where}{problem}",
                    self.map_stage,
                    field=path or None,
                ),
            )
        return out


class KeyBy:
    """Sets the output key from a field or an expression (UTF-8 of its string form)."""

    def __init__(self, name: str, field: str | None = None, expr: Evaluable | None = None) -> None:
        self.name = name
        self.field = field
        self.expr = expr

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        out = []
        for record in batch:
            try:
                key = record.value[self.field] if self.field else self.expr.evaluate(record.value)  # type: ignore[union-attr]
            except Exception as exc:
                failed(record, Failure("key", f"cannot compute the key: {exc}", self.name))
                continue
            if key is None:
                failed(record, Failure("key", "the key is null", self.name))
                continue
            record.out_key = str(key).encode()
            out.append(record)
        return out
