"""The topology file, version 1 (docs/topology.md), as validated pydantic models.

These models are the contract: every key of the spec is here with its default,
unknown keys are errors (`extra="forbid"`) and values are strictly typed, so a
YAML `version: 3` or `lineage: "no"` is rejected instead of guessed at.
Durations are given as strings (`5s`) and kept as milliseconds (`int`).

What this module checks is the shape of one file on its own: names, durations,
stage kinds and their order, topic names. Whether fields exist in the Avro
schemas, and whether expressions and callables work, is `typecheck.py`'s job.

Multiple sources are accepted when they share one schema (they feed the same
stages); the stage chain is type-checked once, against that schema.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeInt,
    PrivateAttr,
    Tag,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from streamline.topology.durations import parse_duration

API_VERSION = "streamline/v1"

NAME_PATTERN = re.compile(r"[a-z0-9.-]+")
TOPIC_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,249}")
FIELD_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SCHEMA_NAME_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
CALLABLE_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

STAGE_KINDS = ("validate", "filter", "map", "key_by", "join", "window", "route")
WINDOW_KINDS = ("tumbling", "hopping", "session")
AGGREGATE_FUNCTIONS = ("count", "sum", "min", "max", "avg", "first", "last")
WINDOW_BOUNDS = ("window_start", "window_end")

# Tags of the tagged unions below. They show up in pydantic's error locations;
# errors.py strips them so users see `stages[3].window.size`.
TAG_PREFIX = "tag:"

AggregateFunction: TypeAlias = Literal["count", "sum", "min", "max", "avg", "first", "last"]


def _pattern_checked(pattern: re.Pattern[str], expected: str, value: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{value!r} is not {expected}")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _duration(minimum: int, value: object) -> int:
    ms = parse_duration(value)
    if ms < minimum:
        raise ValueError(f"must be longer than 0ms, got {value!r}")
    return ms


Duration = Annotated[int, BeforeValidator(partial(_duration, 0))]
"""A duration string (`5s`) held as milliseconds; zero allowed."""

PositiveDuration = Annotated[int, BeforeValidator(partial(_duration, 1))]
"""A duration string held as milliseconds; must be more than zero."""

TopologyName = Annotated[
    str,
    AfterValidator(
        partial(
            _pattern_checked, NAME_PATTERN, "a valid name (lowercase letters, digits, '.', '-')"
        )
    ),
]
TopicName = Annotated[
    str,
    AfterValidator(
        partial(
            _pattern_checked,
            TOPIC_PATTERN,
            "a valid Kafka topic name (letters, digits, '.', '_', '-'; at most 249)",
        )
    ),
]
FieldName = Annotated[
    str,
    AfterValidator(partial(_pattern_checked, FIELD_PATTERN, "a valid Avro field name")),
]
SchemaName = Annotated[
    str,
    AfterValidator(
        partial(_pattern_checked, SCHEMA_NAME_PATTERN, "a full Avro name like com.example.Order")
    ),
]
Expr = Annotated[str, AfterValidator(_not_blank)]

# --- Formats: how records are written on a topic ---
Format = Literal["avro", "confluent-avro", "json"]
"""`avro`: single-object encoding (`C3 01` + fingerprint); `confluent-avro`: the Confluent
wire format (`00` + a 4-byte Schema Registry id); `json`: a JSON object per value."""


def _distinct_formats(value: Any) -> Any:
    if isinstance(value, list) and len(set(value)) != len(value):
        raise PydanticCustomError("formats", "each format may be listed once")
    return value


SourceFormat = Annotated[
    Format | Annotated[list[Format], Field(min_length=1)], AfterValidator(_distinct_formats)
]
SubjectStrategy = Literal["topic", "record", "topic-record"]
# --- end Formats ---
"""A CEL expression; compiled and checked against the schema by typecheck.py."""


class StrictModel(BaseModel):
    """Base of every topology model: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        arbitrary_types_allowed=True,
    )


class Watermark(StrictModel):
    """How far a source's event time may run out of order; when a quiet partition stops counting."""

    max_out_of_orderness: Duration
    idle_timeout: PositiveDuration = 60_000


class Source(StrictModel):
    """One input topic, its record schema and where its event time comes from."""

    name: Annotated[
        str,
        AfterValidator(
            partial(
                _pattern_checked, TOPIC_PATTERN, "a valid name (letters, digits, '.', '_', '-')"
            )
        ),
    ]
    topic: TopicName
    schema_name: SchemaName = Field(alias="schema")
    event_time: FieldName
    partitioned_by: FieldName | None = None
    watermark: Watermark
    verify_checksum: bool = False
    """Check each record's `streamline.checksum` header at decode; a mismatch is an
    `integrity` dead letter."""
    format: SourceFormat = "avro"
    """How values are written: one format, or several told apart by their first byte."""

    @property
    def formats(self) -> list[str]:
        """The accepted formats, as a list."""
        return [self.format] if isinstance(self.format, str) else list(self.format)


class ValidationRule(StrictModel):
    """A named CEL condition every record must meet."""

    name: Annotated[
        str,
        AfterValidator(
            partial(
                _pattern_checked,
                TOPIC_PATTERN,
                "a valid rule name (letters, digits, '.', '_', '-')",
            )
        ),
    ]
    expr: Expr
    severity: Literal["error", "warn"] = "error"
    """`error`: the record is dead-lettered or dropped (`on_failure`); `warn`: it goes on
    with the rule's name in its `streamline.quality.warnings` header."""


class ValidateSpec(StrictModel):
    """The rules of a validate stage and what happens to a record that breaks one."""

    rules: Annotated[list[ValidationRule], Field(min_length=1)]
    on_failure: Literal["dead_letter", "drop"] = "dead_letter"

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, rules: list[ValidationRule]) -> list[ValidationRule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return rules


class KeyExpr(StrictModel):
    """A computed grouping key: the sink field `name` holds the value of the CEL `expr`."""

    name: FieldName
    expr: Expr


def _key_by_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return f"{TAG_PREFIX}field"
    if isinstance(value, dict | KeyExpr):
        return f"{TAG_PREFIX}expr"
    return None


KeyBy = Annotated[
    Annotated[FieldName, Tag(f"{TAG_PREFIX}field")] | Annotated[KeyExpr, Tag(f"{TAG_PREFIX}expr")],
    Discriminator(
        _key_by_tag,
        custom_error_type="key_by",
        custom_error_message="expected a field name, or a mapping {name: ..., expr: ...}",
    ),
]


class Hopping(StrictModel):
    """Windows of `size` starting every `advance`, aligned to the epoch."""

    size: PositiveDuration
    advance: PositiveDuration

    @model_validator(mode="after")
    def _advance_within_size(self) -> Hopping:
        if self.advance > self.size:
            raise PydanticCustomError(
                "topology",
                "{summary}",
                {
                    "summary": "advance is longer than size",
                    "problems": [
                        (
                            "advance",
                            "must not be longer than size (records between windows would be lost)",
                        )
                    ],
                },
            )
        return self


class Session(StrictModel):
    """Per-key sessions closed after `gap` without records."""

    gap: PositiveDuration


class AggregateCall(StrictModel):
    """One aggregate of a window, written `function(field)` (`sum(amount)`, `count()`).

    Serialises back to that string, so the canonical form reads like the file.
    """

    function: AggregateFunction
    field: FieldName | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, AggregateCall):
            return value
        if not isinstance(value, str):
            raise ValueError(
                "expected an aggregate written as function(field), e.g. sum(amount) or count()"
            )
        return parse_aggregate(value)

    @model_serializer(mode="plain")
    def _as_text(self) -> str:
        return f"{self.function}({self.field or ''})"


_AGGREGATE = re.compile(r"\s*([A-Za-z_]\w*)\s*\(\s*([^()]*?)\s*\)\s*")


def parse_aggregate(text: str) -> dict[str, str | None]:
    """`sum(amount)` -> {"function": "sum", "field": "amount"}; ValueError saying what is wrong."""
    match = _AGGREGATE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not an aggregate; expected function(field), e.g. sum(amount) or count()"
        )
    function, field = match.group(1), match.group(2) or None
    if function not in AGGREGATE_FUNCTIONS:
        raise ValueError(
            f"unknown aggregate function {function!r}; known: {', '.join(AGGREGATE_FUNCTIONS)}"
        )
    if field is not None and not FIELD_PATTERN.fullmatch(field):
        raise ValueError(f"{field!r} in {text!r} is not a field name")
    if function == "count" and field is not None:
        raise ValueError(f"count() counts records and takes no field; got {text!r}")
    if function != "count" and field is None:
        raise ValueError(f"{function}() needs a field, e.g. {function}(amount)")
    return {"function": function, "field": field}


class WindowSpec(StrictModel):
    """An event-time window (exactly one of tumbling, hopping, session) and its aggregates."""

    tumbling: PositiveDuration | None = None
    hopping: Hopping | None = None
    session: Session | None = None
    allowed_lateness: Duration = 0
    aggregate: Annotated[dict[str, AggregateCall], Field(min_length=1)]
    emit: Literal["final", "update"] = "final"

    @field_validator("aggregate")
    @classmethod
    def _output_names(cls, aggregate: dict[str, AggregateCall]) -> dict[str, AggregateCall]:
        for name in aggregate:
            if not FIELD_PATTERN.fullmatch(name):
                raise ValueError(f"output name {name!r} is not a valid Avro field name")
            if name in WINDOW_BOUNDS:
                raise ValueError(f"output name {name!r} is reserved for the window bounds")
        return aggregate

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> WindowSpec:
        given = [kind for kind in WINDOW_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            found = f"got {' and '.join(given)}" if given else "got none"
            raise ValueError(
                f"a window needs exactly one of tumbling, hopping, session; {found} "
                "(e.g. tumbling: 1m, hopping: {size: 5m, advance: 1m}, session: {gap: 30m})"
            )
        return self

    @property
    def kind(self) -> Literal["tumbling", "hopping", "session"]:
        """Which of the three window kinds this is."""
        if self.tumbling is not None:
            return "tumbling"
        return "hopping" if self.hopping is not None else "session"


class ValidateStage(StrictModel):
    """`- validate: {rules, on_failure}`: records breaking a rule are dead-lettered or dropped."""

    validation: ValidateSpec = Field(alias="validate")


class FilterStage(StrictModel):
    """`- filter: <CEL>`: records for which it is false are dropped (and counted)."""

    filter: Expr


def _callable_ref(value: Any) -> Any:
    if isinstance(value, str):
        if not CALLABLE_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a callable reference; expected module:function, "
                "e.g. examples.orders:to_eur"
            )
        return value
    if callable(value):
        return value
    raise ValueError("expected a callable reference module:function, e.g. examples.orders:to_eur")


def callable_name(function: Callable[..., Any]) -> str:
    """`module:qualname` of a Python callable: how a builder's callable is fingerprinted."""
    module = getattr(function, "__module__", None) or "<unknown>"
    qualname = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}:{qualname}"


class MapSpec(StrictModel):
    """`- map: {fn: module:function, ...}`: the mapping form of a map stage.

    `- map: module:function` is the shorthand of `{fn: module:function}`. `concurrency`
    bounds the calls in flight (an `async def` fn, or a plain fn with `threads`).
    """

    fn: Annotated[str | Callable[..., Any], BeforeValidator(_callable_ref)]
    concurrency: Annotated[int, Field(ge=1, le=4096)] | None = None  # calls: in flight at once
    threads: Annotated[int, Field(ge=1, le=256)] | None = None  # calls: a plain fn's thread pool
    timeout: PositiveDuration | None = None  # calls: the longest one call may take
    retry: StageRetry | None = None  # calls: in-line attempts, instead of the topology's `retry`
    circuit: CircuitSpec | None = None  # calls: the stage's circuit breaker
    rate_limit: RateLimitSpec | None = None  # calls: at most per_second, per instance
    output: SchemaName | None = None
    """The schema of what `fn` returns: later stages and the sink are checked against it,
    and a result that does not fit is a `schema` dead letter."""

    @property
    def in_flight(self) -> int:
        """Calls in flight at once: `concurrency`, else `threads`, else 1."""
        return self.concurrency or self.threads or 1

    @field_serializer("fn")
    def _fn_as_text(self, value: str | Callable[..., Any]) -> str:
        return value if isinstance(value, str) else callable_name(value)


def _map_form(value: Any) -> str:
    """A mapping is a MapSpec; anything else must be a callable reference."""
    return f"{TAG_PREFIX}map_spec" if isinstance(value, (dict, MapSpec)) else f"{TAG_PREFIX}map_fn"


class MapStage(StrictModel):
    """`- map: module:function`: user code turning a record dict into a dict, or None to drop it.

    The Python builder may pass the callable itself; it is kept so the runtime
    calls exactly that object, and appears as `module:qualname` in the canonical form.
    The mapping form `- map: {fn: module:function, ...}` carries the stage's settings.
    """

    map: Annotated[
        Annotated[
            Annotated[str | Callable[..., Any], BeforeValidator(_callable_ref)],
            Tag(f"{TAG_PREFIX}map_fn"),
        ]
        | Annotated[MapSpec, Tag(f"{TAG_PREFIX}map_spec")],
        Discriminator(_map_form),
    ]

    @field_serializer("map")
    def _map_as_text(self, value: str | Callable[..., Any] | MapSpec) -> Any:
        if isinstance(value, MapSpec):
            return value.model_dump(mode="json", exclude_defaults=True)
        return value if isinstance(value, str) else callable_name(value)

    @property
    def spec(self) -> MapSpec:
        """The stage's settings, with the shorthand form read as `{fn: ...}`."""
        return self.map if isinstance(self.map, MapSpec) else MapSpec(fn=self.map)

    @property
    def function(self) -> str | Callable[..., Any]:
        """The `module:function` reference or the callable itself."""
        return self.spec.fn

    @property
    def reference(self) -> str:
        """The `module:function` text of this map (for callables, `module:qualname`)."""
        fn = self.function
        return fn if isinstance(fn, str) else callable_name(fn)


class KeyByStage(StrictModel):
    """`- key_by: field` or `{name, expr}`: the grouping key of the window that follows."""

    key_by: KeyBy

    @property
    def key_name(self) -> str:
        """The sink field that holds the key: the field itself, or the expression's `name`."""
        return self.key_by if isinstance(self.key_by, str) else self.key_by.name


class WindowStage(StrictModel):
    """`- window: {...}`: the event-time window and aggregates; always the last stage."""

    window: WindowSpec


# --- Outputs: the route stage (the named sinks it sends to are declared under `sinks:`) ---

SinkName = Annotated[
    str,
    AfterValidator(
        partial(
            _pattern_checked, TOPIC_PATTERN, "a valid sink name (letters, digits, '.', '_', '-')"
        )
    ),
]


def _sink_names(value: Any) -> Any:
    """`to: de` or `to: [de, audit]`, read as a list of sink names without repeats."""
    names = [value] if isinstance(value, str) else value
    if isinstance(names, list):
        if not names:
            raise ValueError("names no sink; expected a sink name or a list of them")
        repeated = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
        if repeated:
            raise ValueError(f"sink {repeated[0]!r} is named twice")
    return names


SinkNames = Annotated[list[SinkName], BeforeValidator(_sink_names)]


class RouteBranch(StrictModel):
    """`{when: <CEL>, to: sink | [sinks]}`, or `{otherwise: sink | [sinks]}` (the last branch)."""

    when: Expr | None = None
    to: SinkNames | None = None
    otherwise: SinkNames | None = None

    @model_validator(mode="after")
    def _when_to_or_otherwise(self) -> RouteBranch:
        if self.otherwise is not None:
            if self.when is not None or self.to is not None:
                raise ValueError("a branch is {when, to} or {otherwise}, not both")
        elif self.when is None or self.to is None:
            raise ValueError(
                "a branch needs when and to ({when: \"country == 'DE'\", to: de}), "
                "or is {otherwise: rest}"
            )
        return self

    @property
    def targets(self) -> list[str]:
        """The sinks a record taking this branch goes to."""
        return list(self.otherwise if self.otherwise is not None else self.to or [])


class RouteStage(StrictModel):
    """`- route: [...]`: the last stage; each record goes to the sinks of the first branch
    whose `when` holds, else to `otherwise`'s; with neither, it is dropped (`unrouted`)."""

    route: Annotated[list[RouteBranch], Field(min_length=1)]

    @field_validator("route")
    @classmethod
    def _otherwise_last(cls, branches: list[RouteBranch]) -> list[RouteBranch]:
        for branch in branches[:-1]:
            if branch.otherwise is not None:
                raise ValueError("otherwise must be the last branch")
        return branches

    @property
    def sinks(self) -> list[str]:
        """Every sink some branch sends to, in order of first mention."""
        return list(dict.fromkeys(name for b in self.route for name in b.targets))


def _stage_tag(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return f"{TAG_PREFIX}{next(iter(value))}"
    for kind, model in STAGE_MODELS.items():
        if isinstance(value, model):
            return f"{TAG_PREFIX}{kind}"
    return None


def _stage_shape(value: Any) -> Any:
    """Reject a stage item that is not a mapping with exactly one known key, saying which."""
    if not isinstance(value, dict):
        return value
    known = ", ".join(STAGE_KINDS)
    if not value:
        raise ValueError(f"empty stage; expected one of: {known}")
    if len(value) > 1:
        keys = ", ".join(str(key) for key in value)
        raise ValueError(
            f"a stage has exactly one key, got {len(value)} ({keys}); "
            "write each as its own list item"
        )
    (key,) = value
    if key not in STAGE_KINDS:
        raise ValueError(f"unknown stage {key!r}; expected one of: {known}")
    return value


Stage = Annotated[
    Annotated[ValidateStage, Tag(f"{TAG_PREFIX}validate")]
    | Annotated[FilterStage, Tag(f"{TAG_PREFIX}filter")]
    | Annotated[MapStage, Tag(f"{TAG_PREFIX}map")]
    | Annotated[KeyByStage, Tag(f"{TAG_PREFIX}key_by")]
    | Annotated["JoinStage", Tag(f"{TAG_PREFIX}join")]
    | Annotated[WindowStage, Tag(f"{TAG_PREFIX}window")]
    | Annotated[RouteStage, Tag(f"{TAG_PREFIX}route")],
    Discriminator(
        _stage_tag,
        custom_error_type="stage",
        custom_error_message=f"expected a mapping with one of: {', '.join(STAGE_KINDS)}",
    ),
    BeforeValidator(_stage_shape),
]

STAGE_MODELS: dict[str, type[StrictModel]] = {
    "validate": ValidateStage,
    "filter": FilterStage,
    "map": MapStage,
    "key_by": KeyByStage,
    "window": WindowStage,
    "route": RouteStage,
}

TAGGED_TYPES: dict[str, Any] = {
    **{f"{TAG_PREFIX}{kind}": model for kind, model in STAGE_MODELS.items()},
    f"{TAG_PREFIX}field": str,
    f"{TAG_PREFIX}expr": KeyExpr,
    f"{TAG_PREFIX}map_fn": str,
    f"{TAG_PREFIX}map_spec": MapSpec,
}
"""Tag in an error location -> the type validated under it (errors.py uses it to list keys)."""


def stage_kind(stage: StrictModel) -> str:
    """`validate`, `filter`, `map`, `key_by`, `join`, `window` or `route`."""
    for kind, model in STAGE_MODELS.items():
        if isinstance(stage, model):
            return kind
    raise TypeError(f"not a stage: {stage!r}")


class Sink(StrictModel):
    """The output topic and the Avro schema its records are written with."""

    topic: TopicName
    schema_name: SchemaName = Field(alias="schema")
    checksum: bool = False
    """Stamp each output with `streamline.checksum`, the sha256 of its value bytes."""
    format: Format = "avro"
    """How values are written: `avro`, `confluent-avro` or `json`."""
    subject_strategy: SubjectStrategy = "topic"
    """confluent-avro: the subject the schema is registered under (`<topic>-value`, the
    record's full name, or `<topic>-<full name>`)."""
    auto_register: bool = True
    """confluent-avro: register the schema under its subject at start; false: it must be there."""


class Quality(StrictModel):
    """Data-quality signals: the fields whose share of nulls is exported as a metric."""

    track_nulls: list[FieldName] = []


class Backoff(StrictModel):
    """Delay between in-line attempts: `initial * multiplier**n` up to `max`, maybe jittered."""

    initial: PositiveDuration = 100
    multiplier: Annotated[float, Field(ge=1.0)] = 2.0
    max: PositiveDuration = 5_000
    jitter: bool = True

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> Backoff:
        if self.max < self.initial:
            raise PydanticCustomError(
                "topology",
                "{summary}",
                {
                    "summary": "max is shorter than initial",
                    "problems": [("max", "must not be shorter than initial")],
                },
            )
        return self


class Retry(StrictModel):
    """How often a failing map stage is retried in line, then via `<name>.retry`, before the DLQ."""

    attempts: Annotated[int, Field(ge=1)] = 3
    backoff: Backoff = Backoff()
    topic_attempts: Annotated[int, Field(ge=0)] = 0


DEFAULT_MAX_STALENESS_MS = 5 * 60_000
BREACH_FACTOR = 3


class Freshness(StrictModel):
    """The freshness SLA published in heartbeats.

    Defaults: `max_staleness` 5m (a 1-minute window plus a restart fits), `breach_after`
    three times `max_staleness` (15m by default), `heartbeat_interval` 5s.
    """

    max_staleness: PositiveDuration = DEFAULT_MAX_STALENESS_MS
    breach_after: PositiveDuration = BREACH_FACTOR * DEFAULT_MAX_STALENESS_MS
    heartbeat_interval: PositiveDuration = 5_000

    @model_validator(mode="before")
    @classmethod
    def _breach_after_follows_max_staleness(cls, data: Any) -> Any:
        if isinstance(data, dict) and "breach_after" not in data and "max_staleness" in data:
            try:
                staleness = parse_duration(data["max_staleness"])
            except ValueError:
                return data
            return {**data, "breach_after": f"{BREACH_FACTOR * staleness}ms"}
        return data

    @model_validator(mode="after")
    def _breach_not_before_late(self) -> Freshness:
        if self.breach_after < self.max_staleness:
            raise PydanticCustomError(
                "topology",
                "{summary}",
                {
                    "summary": "breach_after is shorter than max_staleness",
                    "problems": [("breach_after", "must not be shorter than max_staleness")],
                },
            )
        return self


def _owned_topic_defaults(data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    name = data.get("name")
    if not (isinstance(name, str) and NAME_PATTERN.fullmatch(name)):
        name = "topology"  # the name itself is reported; don't add errors about its topics
    filled = dict(data)
    filled.setdefault("dead_letter_topic", f"{name}.dlq")
    filled.setdefault("late_topic", f"{name}.late")
    return filled


# --- Outputs: named sinks (`sinks:`), the long form of `sink:` that a route stage sends to ---

_BYTE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
_BYTE_SIZE = re.compile(r"\s*(\d+)\s*(B|KB|MB|GB)\s*")


def _byte_size(value: object) -> int:
    match = _BYTE_SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"expected a size with a unit (B, KB, MB or GB, e.g. 128MB), got {value!r}"
        )
    size = int(match.group(1)) * _BYTE_UNITS[match.group(2)]
    if size <= 0:
        raise ValueError("must be more than 0 bytes")
    return size


ByteSize = Annotated[int, BeforeValidator(_byte_size)]
"""A size string (`128MB`) held as bytes."""

MAX_ROLL_MS = 5 * 60_000
"""A file sink's files commit with the Kafka transaction, which must not outlive the broker's
`transaction.max.timeout.ms` (15 minutes by default): rolls are at most this long."""


def _local_path(value: str) -> str:
    if "://" in value:
        raise ValueError(
            f"{value!r} is not a local path; object storage is not supported yet, give a "
            "folder on the local filesystem (or a mounted one)"
        )
    return _not_blank(value)


class Roll(StrictModel):
    """When a file sink's open files are closed: every `every`, or once `max_bytes` are buffered."""

    every: Annotated[
        int,
        BeforeValidator(partial(_duration, 1)),
        Field(le=MAX_ROLL_MS),
    ] = 60_000
    max_bytes: ByteSize = 128 * 1024**2


class FilesSpec(StrictModel):
    """`files: {path, format, partition_by, roll}`: where and how a file sink writes."""

    path: Annotated[str, AfterValidator(_local_path)]
    format: Literal["parquet", "jsonl"] = "parquet"
    partition_by: list[FieldName] = []
    roll: Roll = Roll()


class FileSink(StrictModel):
    """A named output written as files, exactly once: `{files: {...}, schema: ...}`."""

    files: FilesSpec
    schema_name: SchemaName = Field(alias="schema")


def _http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


class WebhookRetry(StrictModel):
    """How often a batch is POSTed before its records become dead letters."""

    attempts: Annotated[int, Field(ge=1)] = 5
    backoff: Backoff = Backoff()


class WebhookSpec(StrictModel):
    """`webhook: {url, batch, timeout, headers, retry}`: where and how records are POSTed."""

    url: Annotated[str, AfterValidator(_http_url)]
    batch: Annotated[int, Field(ge=1, le=10_000)] = 100
    timeout: PositiveDuration = 5_000
    headers: dict[str, str] = {}
    retry: WebhookRetry = WebhookRetry()
    circuit: WebhookCircuitSpec | None = None  # stop POSTing to an endpoint that mostly fails


class WebhookSink(StrictModel):
    """A named output POSTed as JSON batches, at least once, with idempotency keys."""

    webhook: WebhookSpec
    schema_name: SchemaName = Field(alias="schema")


def _sink_form(value: Any) -> str:
    """A mapping with `files` is a file sink, with `webhook` a webhook; else a topic sink."""
    if isinstance(value, FileSink) or (isinstance(value, dict) and "files" in value):
        return f"{TAG_PREFIX}file_sink"
    if isinstance(value, WebhookSink) or (isinstance(value, dict) and "webhook" in value):
        return f"{TAG_PREFIX}webhook_sink"
    return f"{TAG_PREFIX}topic_sink"


TAGGED_TYPES.update(
    {
        f"{TAG_PREFIX}topic_sink": Sink,
        f"{TAG_PREFIX}file_sink": FileSink,
        f"{TAG_PREFIX}webhook_sink": WebhookSink,
    }
)


def _sink_from_sinks(data: Any) -> Any:
    """With `sinks:`, `sink` is filled with the first one: the runtime's default output, and
    what stateless commands that read "the" output topic see. Both given is an error."""
    if not isinstance(data, dict) or data.get("sinks") is None:
        return data
    sinks = data["sinks"]
    topic_sinks = [
        s
        for s in (sinks.values() if isinstance(sinks, dict) else [])
        if _sink_form(s).endswith("topic_sink")
    ]
    first = topic_sinks[0] if topic_sinks else None
    if "sink" in data and not _same_sink(data["sink"], first):
        raise PydanticCustomError(
            "topology",
            "{summary}",
            {
                "summary": "sink and sinks are both given",
                "problems": [
                    ("sinks", "give sink (one output) or sinks (named outputs), not both")
                ],
            },
        )
    return {**data, "sink": first}


def _same_sink(sink: Any, first: Any) -> bool:
    """Whether `sink` is the one filled from `sinks` (a dump of the model holds both)."""
    if sink is None or first is None:
        return sink is first
    try:
        return Sink.model_validate(sink) == Sink.model_validate(first)
    except ValueError:
        return False


def route_of(stages: list[Any]) -> RouteStage | None:
    """The route stage, if the topology has one (always the last stage)."""
    return next((s for s in stages if isinstance(s, RouteStage)), None)


def _route_problems(topology: Topology) -> list[tuple[str, str]]:
    """Where the route stage and `sinks:` disagree, or a route is where it cannot be."""
    problems: list[tuple[str, str]] = []
    stages = topology.stages
    routes = [i for i, s in enumerate(stages) if isinstance(s, RouteStage)]
    for i in routes[1:]:
        problems.append((f"stages[{i}].route", "a topology has at most one route stage"))
    if routes and routes[0] != len(stages) - 1:
        problems.append(
            (f"stages[{routes[0] + 1}]", "nothing may follow the route stage: it is the last")
        )
    if routes and topology.window is not None:
        problems.append(
            (f"stages[{routes[0]}].route", "routing window results is not supported yet")
        )
    sinks = topology.sinks
    if sinks is None and topology.sink is None:
        problems.append(("sink", "required, but missing (or give sinks)"))
    others = [n for n, s in (sinks or {}).items() if not isinstance(s, Sink)]
    if others and topology.window is not None:
        problems.append(
            (f"sinks.{others[0]}", "a file or webhook sink after a window is not supported yet")
        )
    if sinks is None:
        if routes:
            problems.append(
                (f"stages[{routes[0]}].route", "a route sends to sinks declared in sinks:")
            )
        return problems
    if not routes:
        if len(sinks) > 1:
            problems.append(
                ("sinks", "several sinks need a route stage to say where each record goes")
            )
        return problems
    if len({s.checksum for s in sinks.values() if isinstance(s, Sink)}) > 1:
        problems.append(
            ("sinks", "checksum: set it on every sink or on none (one setting per topology)")
        )
    index = routes[0]
    route = stages[index]
    assert isinstance(route, RouteStage)
    for b, branch in enumerate(route.route):
        key = "otherwise" if branch.otherwise is not None else "to"
        for name in branch.targets:
            if name not in sinks:
                problems.append(
                    (
                        f"stages[{index}].route[{b}].{key}",
                        f"unknown sink {name!r}; sinks: {', '.join(sinks)}",
                    )
                )
    for name in sinks:
        if name not in route.sinks:
            problems.append((f"sinks.{name}", "no branch of the route sends records to it"))
    return problems


def _without_unused_options(data: dict[str, Any]) -> dict[str, Any]:
    """The dump without options added later while they hold their defaults, so a topology
    that doesn't use them keeps its fingerprint."""
    for source in data["sources"]:
        if source.get("verify_checksum") is False:
            del source["verify_checksum"]
    for stage in data["stages"]:
        for rule in stage.get("validate", {}).get("rules", []):
            if rule.get("severity") == "error":
                del rule["severity"]
        for i, branch in enumerate(stage.get("route", [])):
            stage["route"][i] = {k: v for k, v in branch.items() if v is not None}
    if data.get("sinks") is None:
        data.pop("sinks", None)
    else:
        data.pop("sink", None)  # filled from sinks
    for sink in [data["sink"]] if "sink" in data else data["sinks"].values():
        if sink.get("checksum") is False:
            del sink["checksum"]
    for source in [*data["sources"], *data.get("tables", [])]:  # formats
        if source.get("format") == "avro":
            del source["format"]
    for sink in [data["sink"]] if "sink" in data else data["sinks"].values():
        for key, default in (
            ("format", "avro"),
            ("subject_strategy", "topic"),
            ("auto_register", True),
        ):
            if sink.get(key) == default:
                del sink[key]
    if data.get("quality") == {"track_nulls": []}:
        del data["quality"]
    _without_unused_tables(data)
    # where state is kept, not what is computed: the same results with or without standbys
    data.pop("standby_replicas", None)
    return data


# --- tables and joins --------------------------------------------------------------------
# A table is a compacted topic read into state, partition by partition; a join stage
# adds fields of the table's row for a record's key (docs/topology.md, "Tables and joins").


class Versioned(StrictModel):
    """A versioned table keeps the versions of each key, so lookups are as of event time."""

    history: PositiveDuration
    """Versions older than this behind a key's newest version are forgotten."""


class Table(StrictModel):
    """`tables:` item: a compacted topic read as a table keyed by `key` (else the record key)."""

    name: Annotated[
        str,
        AfterValidator(
            partial(_pattern_checked, NAME_PATTERN, "a valid table name (a-z, 0-9, '.', '-')")
        ),
    ]
    topic: TopicName
    schema_name: SchemaName = Field(alias="schema")
    key: FieldName | None = None
    """The value field holding the table key; without it, the record key (UTF-8)."""
    global_: bool = Field(False, alias="global")
    """Every instance holds all partitions: no co-partitioning (small reference data)."""
    versioned: Versioned | None = None
    valid_from: FieldName | None = None
    """The event-time field of a version (default: the record timestamp); versioned only."""
    format: SourceFormat = "avro"
    """How the table topic's values are written (as a source's `format`)."""

    @property
    def formats(self) -> list[str]:
        return [self.format] if isinstance(self.format, str) else list(self.format)


class JoinOn(StrictModel):
    """`on: {left, right}`: a stream-stream join's key fields, when their names differ."""

    left: FieldName
    """The join key's field in the records reaching the join."""
    right: FieldName
    """The join key's field in the joined stream's records."""


class JoinSpec(StrictModel):
    """`- join: {table, on, fields, missing}`: adds a table row's fields to each record;
    `- join: {stream, on, within, type, fields}`: joins the records of another source."""

    table: Annotated[str, AfterValidator(_not_blank)] | None = None
    stream: Annotated[str, AfterValidator(_not_blank)] | None = None
    """A stream-stream join: the source (not sources[0]) whose records feed this join only."""
    on: FieldName | JoinOn
    """The record field whose value is looked up as the table key; for a stream join, the
    key field of both sides (`{left, right}` when their names differ)."""
    fields: Annotated[dict[str, FieldName], Field(min_length=1)]
    """New record field -> table field (the joined stream's field, for a stream join)."""
    missing: Literal["dead_letter", "drop", "null"] = "dead_letter"
    """What a record without a match gets: a `join` dead letter, a counted drop, or nulls."""
    # stream-stream joins
    within: PositiveDuration | None = None
    """Stream join: two records match when their event times are at most this far apart."""
    type: Literal["inner", "left", "outer"] = "inner"
    """Stream join: `inner` emits matches only; `left` also each record without a match once
    its window closed (the joined fields null); `outer` also each unmatched joined record."""
    allowed_lateness: Duration = 0
    """Stream join: how far behind the join's watermark a record may still join."""

    @property
    def left_on(self) -> str:
        return self.on if isinstance(self.on, str) else self.on.left

    @property
    def right_on(self) -> str:
        return self.on if isinstance(self.on, str) else self.on.right

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        """YAML 1.1 reads an unquoted `on:` key as the boolean true."""
        if isinstance(data, dict) and True in data and "on" not in data:
            return {("on" if k is True else k): v for k, v in data.items()}
        return data

    @field_validator("fields")
    @classmethod
    def _field_names(cls, fields: dict[str, str]) -> dict[str, str]:
        for name in fields:
            if not FIELD_PATTERN.fullmatch(name):
                raise ValueError(f"new field name {name!r} is not a valid Avro field name")
        return fields


class JoinStage(StrictModel):
    """`- join: {...}`: a stream-table join, looked up in the record's own partition."""

    join: JoinSpec


STAGE_MODELS["join"] = JoinStage
TAGGED_TYPES[f"{TAG_PREFIX}join"] = JoinStage


def joins_of(topology: Topology) -> list[tuple[int, JoinSpec]]:
    """(stage index, spec) of each join stage."""
    return [(i, s.join) for i, s in enumerate(topology.stages) if isinstance(s, JoinStage)]


def table_named(topology: Topology, name: str) -> Table:
    return next(t for t in topology.tables if t.name == name)


def stream_join_of(topology: Topology) -> tuple[int, JoinSpec] | None:
    """(stage index, spec) of the topology's stream-stream join, if it has one."""
    return next(((i, s) for i, s in joins_of(topology) if s.stream is not None), None)


def joined_stream_names(topology: Topology) -> set[str]:
    """Names of the sources that feed a stream join only (not the stages)."""
    return {s.stream for _, s in joins_of(topology) if s.stream is not None}


def source_named(topology: Topology, name: str) -> Source:
    return next(s for s in topology.sources if s.name == name)


def _stream_join_problems(
    topology: Topology, i: int, spec: JoinSpec, seen: list[int]
) -> list[tuple[str, str]]:
    """What a stream-stream join stage gets wrong, or asks for that is not supported yet."""
    path = f"stages[{i}].join"
    problems: list[tuple[str, str]] = []
    names = [s.name for s in topology.sources]
    if spec.stream not in names[1:]:
        why = (
            f"{spec.stream!r} is sources[0], which feeds the stages"
            if spec.stream == names[0]
            else f"unknown source {spec.stream!r}"
        )
        problems.append(
            (
                f"{path}.stream",
                f"{why}: a stream join names another item of sources: "
                f"({', '.join(names[1:]) or 'there is none'})",
            )
        )
    if spec.table is not None:
        problems.append((path, "a join has either table: or stream:, not both"))
    if spec.within is None:
        problems.append((f"{path}.within", "a stream join needs within: (e.g. 10m)"))
    if "missing" in spec.model_fields_set:
        problems.append((f"{path}.missing", "missing: is for table joins; use type: left"))
    if seen:
        problems.append((path, "a topology has at most one stream join (not supported yet)"))
    if i != len(topology.stages) - 1:
        problems.append(
            (
                f"stages[{i + 1}]",
                "stages after a stream join are not supported yet: put them before the join",
            )
        )
    if topology.window is not None or topology.key_by is not None:
        problems.append((path, "a stream join with key_by or a window is not supported yet"))
    if topology.sinks is not None:
        problems.append((path, "a stream join writes to sink: (sinks: is not supported yet)"))
    if topology.standby_replicas:
        problems.append(
            ("standby_replicas", "standby replicas of a stream join are not supported yet")
        )
    return problems


def _join_problems(topology: Topology) -> list[tuple[str, str]]:
    """Tables and joins that the file gets wrong, or asks for what is not supported yet."""
    problems: list[tuple[str, str]] = []
    names: dict[str, int] = {}
    streams: list[int] = []
    taken = {s.topic for s in topology.sources} | {
        s.topic for s in topology.outputs.values() if isinstance(s, Sink)
    }
    for i, table in enumerate(topology.tables):
        if table.name in names:
            problems.append((f"tables[{i}].name", f"duplicate table name {table.name!r}"))
        names.setdefault(table.name, i)
        if table.topic in taken:
            problems.append(
                (f"tables[{i}].topic", f"topic {table.topic!r} is a source or the sink")
            )
        if table.valid_from is not None and table.versioned is None:
            problems.append(
                (f"tables[{i}].valid_from", "valid_from is for versioned tables; add versioned")
            )
    for i, stage in enumerate(topology.stages):
        if not isinstance(stage, JoinStage):
            continue
        spec, path = stage.join, f"stages[{i}].join"
        if spec.stream is not None:
            problems += _stream_join_problems(topology, i, spec, streams)
            streams.append(i)
            continue
        if not isinstance(spec.on, str):
            problems.append((f"{path}.on", "on: {left, right} is for stream joins"))
        for key in ("within", "type", "allowed_lateness"):
            if key in spec.model_fields_set:
                problems.append((f"{path}.{key}", f"{key}: is for stream joins (stream: <source>)"))
        if spec.table is None:
            problems.append((path, "a join needs table: <name of a tables: item>"))
        elif spec.table not in names:
            known = ", ".join(names) or "none"
            problems.append((f"{path}.table", f"unknown table {spec.table!r}; tables: {known}"))
        if topology.key_by is not None and i > topology.stages.index(topology.key_by):
            problems.append((path, "a join must come before the key_by stage"))
    return problems


def _without_unused_tables(data: dict[str, Any]) -> None:
    for stage in data["stages"]:
        join = stage.get("join")
        if join is not None and join.get("stream") is None:  # stream-join keys, added later
            for key in ("within", "type", "allowed_lateness"):
                join.pop(key, None)
    if not data.get("tables"):
        data.pop("tables", None)
        return
    for table in data["tables"]:
        for key, default in (("key", None), ("global", False), ("versioned", None)):
            if table.get(key, default) == default:
                table.pop(key, None)
        if table.get("valid_from") is None:
            table.pop("valid_from", None)


# --- Calls: a map's timeout, retry and circuit (`stages[].map.*`) ------------------------

DEFAULT_TRANSACTION_TIMEOUT_MS = 30_000
"""The producer's `transaction.timeout.ms` that `streamline run` sets."""


class StageRetry(StrictModel):
    """A map's own in-line attempts and backoff (`stages[].map.retry`), instead of `retry`'s."""

    attempts: Annotated[int, Field(ge=1)] = 3
    backoff: Backoff = Backoff()


def _rate(value: object) -> object:
    """`50%` or `0.5`: a share of calls."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(
                f"expected a percentage like 50% or a share like 0.5, got {value!r}"
            ) from None
    return value


class CircuitSpec(StrictModel):
    """`circuit:` on a map: stop calling a dependency that mostly fails, and wait in the retry topic."""

    failure_rate: Annotated[float, BeforeValidator(_rate), Field(gt=0, le=1)] = 0.5
    min_calls: Annotated[int, Field(ge=1)] = 20
    window: PositiveDuration = 30_000
    open_for: PositiveDuration = 10_000
    probes: Annotated[int, Field(ge=1)] = 3
    on_open: Literal["retry_topic", "pause"] = "retry_topic"


class RateLimitSpec(StrictModel):
    """`rate_limit:` on a map: a token bucket per instance, `per_second` calls, `burst` at once."""

    per_second: Annotated[float, Field(gt=0)]
    burst: Annotated[int, Field(ge=1)] = 1


# --- standby replicas ------------------------------------------------------------------


def _standby_problems(topology: Topology) -> list[tuple[str, str]]:
    if topology.standby_replicas and topology.window is None:
        return [("standby_replicas", "standby replicas copy window state: add a window stage")]
    return []


# --- webhook sinks: circuit breaker (`sinks.<name>.webhook.circuit`) -------------------


class WebhookCircuitSpec(CircuitSpec):
    """`circuit:` on a webhook sink: stop POSTing to an endpoint that mostly fails; while it
    is open, batches become dead letters at once instead of waiting out their retries."""

    on_open: Literal["dead_letter"] = "dead_letter"  # type: ignore[assignment]


class Topology(StrictModel):
    """A whole topology file, validated, with every default filled in.

    Besides the file's keys it knows the names derived from them (group id,
    owned topics, transactional id) and its fingerprint. A topology read by
    `load_topology` also remembers its file (`path`) and project folder (`base_dir`);
    equality compares content only.
    """

    api_version: Literal["streamline/v1"] = Field("streamline/v1", alias="apiVersion")
    name: TopologyName
    version: Annotated[str, AfterValidator(_not_blank)]
    sources: Annotated[list[Source], Field(min_length=1)]
    stages: list[Stage] = []
    sink: Sink | None
    """The one output topic; with `sinks:`, the first topic sink among them (None without one)."""
    sinks: (
        dict[
            SinkName,
            Annotated[
                Annotated[Sink, Tag(f"{TAG_PREFIX}topic_sink")]
                | Annotated[FileSink, Tag(f"{TAG_PREFIX}file_sink")]
                | Annotated[WebhookSink, Tag(f"{TAG_PREFIX}webhook_sink")],
                Discriminator(_sink_form),
            ],
        ]
        | None
    ) = None
    """Named outputs (topics or files), for a route stage."""
    guarantee: Literal["exactly_once", "at_least_once"] = "exactly_once"
    commit_interval: PositiveDuration = 100
    retry: Retry = Retry()
    dead_letter_topic: TopicName
    late_topic: TopicName
    freshness: Freshness = Freshness()
    lineage: bool = True
    quality: Quality = Quality()
    tables: list[Table] = []
    standby_replicas: NonNegativeInt = 0

    _path: Path | None = PrivateAttr(default=None)
    _base_dir: Path | None = PrivateAttr(default=None)
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _fill_owned_topics(cls, data: Any) -> Any:
        return _sink_from_sinks(_owned_topic_defaults(data))

    @model_validator(mode="after")
    def _structure(self) -> Topology:
        problems = [
            *self._source_problems(),
            *self._stage_order_problems(),
            *_route_problems(self),
            *self._topic_problems(),
            *_join_problems(self),
            *_standby_problems(self),
        ]
        if problems:
            raise PydanticCustomError(
                "topology",
                "{summary}",
                {"summary": "; ".join(f"{p}: {m}" for p, m in problems), "problems": problems},
            )
        return self

    def _source_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        first = self.sources[0]
        joined = joined_stream_names(self)  # a joined stream has a schema of its own
        names: dict[str, int] = {}
        topics: dict[str, int] = {}
        for i, source in enumerate(self.sources):
            if source.name in names:
                problems.append(
                    (
                        f"sources[{i}].name",
                        f"duplicate source name {source.name!r} "
                        f"(also sources[{names[source.name]}])",
                    )
                )
            names.setdefault(source.name, i)
            if source.topic in topics:
                problems.append(
                    (
                        f"sources[{i}].topic",
                        f"topic {source.topic!r} is already read by "
                        f"sources[{topics[source.topic]}]",
                    )
                )
            topics.setdefault(source.topic, i)
            if source.schema_name != first.schema_name and source.name not in joined:
                problems.append(
                    (
                        f"sources[{i}].schema",
                        f"all sources feed the same stages, so they share one schema: expected "
                        f"{first.schema_name} (as sources[0]), got {source.schema_name}",
                    )
                )
        return problems

    def _stage_order_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        windows = [i for i, s in enumerate(self.stages) if isinstance(s, WindowStage)]
        keys = [i for i, s in enumerate(self.stages) if isinstance(s, KeyByStage)]
        for i in windows[1:]:
            problems.append((f"stages[{i}].window", "a topology has at most one window stage"))
        if windows and windows[0] != len(self.stages) - 1:
            after = windows[0] + 1
            problems.append(
                (
                    f"stages[{after}]",
                    "nothing may follow the window stage: its results go to the sink",
                )
            )
        for i in keys[1:]:
            problems.append((f"stages[{i}].key_by", "a topology has at most one key_by stage"))
        if windows and (not keys or keys[0] > windows[0]):
            problems.append(
                (
                    f"stages[{windows[0]}].window",
                    "a window needs a key_by stage before it (the grouping key)",
                )
            )
        window, key = self.window, self.key_by
        if window is not None and key is not None and key.key_name in window.aggregate:
            problems.append(
                (
                    f"stages[{windows[0]}].window.aggregate.{key.key_name}",
                    f"output name {key.key_name!r} is already the key field",
                )
            )
        return problems

    def _topic_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        source_topics = {s.topic for s in self.sources}
        sinks = self.outputs if self.sinks is not None else {"": self.sink}
        written: dict[str, str] = {}
        for name, sink in sinks.items():
            if not isinstance(sink, Sink):
                continue
            path = f"sinks.{name}.topic" if name else "sink.topic"
            if sink.topic in source_topics:
                problems.append((path, f"topic {sink.topic!r} is also a source (a loop)"))
            elif sink.topic in {self.retry_topic, self.repartition_topic}:
                problems.append((path, f"topic {sink.topic!r} is used by streamline itself"))
            elif sink.topic in written:
                problems.append(
                    (path, f"topic {sink.topic!r} is also the topic of {written[sink.topic]}")
                )
            written.setdefault(sink.topic, f"sinks.{name}")
        owned = {
            "dead_letter_topic": self.dead_letter_topic,
            "late_topic": self.late_topic,
        }
        derived = {self.retry_topic, self.repartition_topic}
        seen: dict[str, str] = {}
        for key, topic in owned.items():
            if topic in source_topics or topic in written:
                problems.append((key, f"topic {topic!r} is also a source or the sink"))
            elif topic in derived:
                problems.append((key, f"topic {topic!r} is used by streamline itself"))
            elif topic in seen:
                problems.append((key, f"topic {topic!r} is also the {seen[topic]}"))
            seen.setdefault(topic, key)
        return problems

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Topology):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def set_origin(self, path: Path, base_dir: Path, lines: dict[str, int]) -> None:
        """Remember where this topology was read from (the loader's job; not content)."""
        self._path = path
        self._base_dir = base_dir
        self._lines = lines

    @property
    def lines(self) -> dict[str, int]:
        """Spec-style path -> line in the file, so later errors (type checks) can point at lines."""
        return self._lines

    @property
    def path(self) -> Path | None:
        """The file this topology was loaded from; None when built in Python."""
        return self._path

    @property
    def base_dir(self) -> Path | None:
        """The project folder (parent of the file's folder): map modules are imported from it."""
        return self._base_dir

    @property
    def schemas_dir(self) -> Path | None:
        """The project's `schemas/` folder beside the topology's folder, if there is one."""
        if self._base_dir is None or not (self._base_dir / "schemas").is_dir():
            return None
        return self._base_dir / "schemas"

    @property
    def origin(self) -> str:
        """How error messages name this topology: its file, else `topology '<name>'`."""
        return str(self._path) if self._path is not None else f"topology {self.name!r}"

    @property
    def group_id(self) -> str:
        """The consumer group id: the topology's name."""
        return self.name

    @property
    def retry_topic(self) -> str:
        return f"{self.name}.retry"

    @property
    def repartition_topic(self) -> str:
        return f"{self.name}.repartition"

    def changelog_topic(self, store: str) -> str:
        """The compacted changelog topic of one state store."""
        return f"{self.name}.{store}.changelog"

    def transactional_id(self, instance_id: str) -> str:
        """The producer's `transactional.id` for one instance: `<name>-<instance_id>`."""
        return f"{self.name}-{instance_id}"

    @property
    def source(self) -> Source:
        """The first source (the one whose schema the stages are checked against)."""
        return self.sources[0]

    @property
    def outputs(self) -> dict[str, Sink | FileSink | WebhookSink]:
        """Every output by name: `sinks`, or `{"sink": sink}` for the one-sink shorthand."""
        if self.sinks is not None:
            return dict(self.sinks)
        return {"sink": self.sink} if self.sink is not None else {}

    @property
    def key_by(self) -> KeyByStage | None:
        return next((s for s in self.stages if isinstance(s, KeyByStage)), None)

    @property
    def window(self) -> WindowSpec | None:
        return next((s.window for s in self.stages if isinstance(s, WindowStage)), None)

    def canonical_json(self) -> str:
        """Sorted compact JSON of the validated model, defaults filled: what the fingerprint hashes.

        Durations appear as milliseconds, aggregates as `function(field)`, map
        callables as `module:qualname`; the file's path is not part of it.
        """
        return json.dumps(
            _without_unused_options(self.model_dump(mode="json", by_alias=True)),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @property
    def fingerprint(self) -> str:
        """sha256 hex of the canonical form: changes with the content, not with formatting."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    @property
    def fingerprint12(self) -> str:
        return self.fingerprint[:12]

    @property
    def header_value(self) -> str:
        """The `streamline.topology` header: `name@version#fingerprint12`."""
        return f"{self.name}@{self.version}#{self.fingerprint12}"
