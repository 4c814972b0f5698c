"""Type checking a topology against its Avro schemas before anything runs (spec: "Type checking").

`check_topology` finds every problem at once and raises one TopologyError
listing them, each naming the stage path and the field. What it returns,
`CheckedTopology`, is what the runtime executes: the schemas, the compiled
expressions and imported map callables per stage, and the stage chain that
`streamline validate` prints.

Every stage is checked against the schema of the records reaching it: the
source schema, or the `output:` schema of the last map before it (a typed map;
its results are checked against that schema at run time and a misfit is a
`schema` dead letter). A map without `output:` returns whatever its code returns,
which cannot be known statically: stages after it are still checked against the
fields before it, the records it sends to the sink are fitted to the sink schema
at run time, and `warnings` says so.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from streamline.serde.arrow import parquet_problems
from streamline.serde.schema_store import Schema, SchemaError, SchemaStore
from streamline.topology import avro_types
from streamline.topology.callables import CallableError, add_import_paths, import_callable
from streamline.topology.durations import format_duration
from streamline.topology.errors import Problem, TopologyError
from streamline.topology.expressions import Expression, ExpressionError, compile_expression
from streamline.topology.join_check import check_join, check_stream_join, check_tables
from streamline.topology.model import (
    DEFAULT_TRANSACTION_TIMEOUT_MS,
    WINDOW_BOUNDS,
    AggregateCall,
    FileSink,
    FilterStage,
    JoinStage,
    KeyByStage,
    MapStage,
    RouteStage,
    Stage,
    Topology,
    ValidateStage,
    WebhookSink,
    WindowSpec,
    WindowStage,
    joined_stream_names,
    route_of,
    stage_kind,
)
from streamline.topology.pinning import run_fingerprint

MapFunction = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass(frozen=True)
class CheckedStage:
    """One stage, ready to run: its compiled expressions or imported function, and what it outputs.

    `expressions` is keyed by rule name for a validate stage, `"filter"` for a
    filter, `"key_by"` for a computed key; `function` is set for a map stage.
    """

    index: int
    kind: str
    stage: Stage
    output: str
    expressions: dict[str, Expression] = field(default_factory=dict)
    function: MapFunction | None = None
    output_schema: Schema | None = None
    """A typed map's `output:` schema, which its results are checked against at run time."""

    @property
    def path(self) -> str:
        return f"stages[{self.index}].{self.kind}"


@dataclass(frozen=True)
class CheckedTopology:
    """A topology that passed type checking, with everything the runtime needs resolved once."""

    topology: Topology
    source_schema: Schema
    sink_schema: Schema
    """The schema of `topology.sink`: the only output, or the first of `sinks`."""
    stages: tuple[CheckedStage, ...]
    output_fields: dict[str, str]
    """Sink field -> type in words, for the records this topology writes (when known statically)."""
    warnings: tuple[Problem, ...] = ()
    """What validate warns about without refusing: maps without `output:`."""
    sink_schemas: dict[str, Schema] = field(default_factory=dict)
    """Output name -> its schema, for every output (`topology.outputs`)."""
    table_schemas: dict[str, Schema] = field(default_factory=dict)
    """The schema of each table, by table name."""
    stream_schemas: dict[str, Schema] = field(default_factory=dict)
    """The schema of each source that feeds a stream join only, by source name."""

    schemas: tuple[Schema, ...] = ()
    """Every schema the topology names (its sources', its sinks' and typed maps' outputs)."""

    @cached_property
    def fingerprint(self) -> str:
        """The run fingerprint: the definition, schema files, map code, streamline version."""
        functions = [s.function for s in self.stages if s.function is not None]
        return run_fingerprint(self.topology, self.schemas, functions)

    @property
    def header_value(self) -> str:
        """The `streamline.topology` header: `name@version#<run fingerprint, 12 digits>`."""
        return f"{self.topology.name}@{self.topology.version}#{self.fingerprint[:12]}"

    @property
    def expressions(self) -> dict[int, dict[str, Expression]]:
        """Stage index -> its compiled CEL expressions."""
        return {s.index: s.expressions for s in self.stages if s.expressions}

    @property
    def map_callables(self) -> dict[int, MapFunction]:
        """Stage index -> the map function to call."""
        return {s.index: s.function for s in self.stages if s.function is not None}


class _Checker:
    """Collects the problems of one topology while walking it once."""

    def __init__(self, topology: Topology, store: SchemaStore) -> None:
        self.topology = topology
        self.store = store
        self.problems: list[Problem] = []
        self._samples: dict[str, dict[str, Any]] = {}
        first = next(iter(topology.sinks)) if topology.sinks else None
        self.sink_path = f"sinks.{first}.schema" if first is not None else "sink.schema"
        """Where the default sink's schema is written, for errors about it."""

    def sample(self, schema: Schema) -> dict[str, Any]:
        """A made-up record of `schema` for probing expressions (built once per schema)."""
        if schema.name not in self._samples:
            self._samples[schema.name] = avro_types.sample_record(schema)
        return self._samples[schema.name]

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def schema(self, path: str, name: str) -> Schema | None:
        try:
            return self.store.get(name)
        except SchemaError as exc:
            self.problem(path, str(exc))
            return None

    def field_type(self, path: str, schema: Schema, name: str, role: str) -> Any | None:
        """The type of `name` in `schema`, or None after reporting it missing."""
        if name in schema.fields:
            return schema.fields[name]
        self.problem(
            path,
            f"unknown field {name!r} ({role}); fields of {schema.name}: {', '.join(schema.fields)}",
        )
        return None


def check_topology(topology: Topology, store: SchemaStore) -> CheckedTopology:
    """Check `topology` against the schemas in `store`; TopologyError listing every problem if not.

    Map modules are imported with the topology's project folder and the current
    folder at the front of sys.path.
    """
    checker = _Checker(topology, store)
    source_schema = _check_sources(checker)
    if source_schema is not None:
        for i, field in enumerate(topology.quality.track_nulls):
            checker.field_type(f"quality.track_nulls[{i}]", source_schema, field, "track_nulls")
    sink_schemas: dict[str, Schema] = {}
    for name, sink in topology.outputs.items():
        path = f"sinks.{name}.schema" if topology.sinks is not None else "sink.schema"
        found = checker.schema(path, sink.schema_name)
        if found is not None:
            sink_schemas[name] = found
            if isinstance(sink, FileSink):
                _check_file_sink(checker, name, sink, found)
    sink_schema = sink_schemas.get(next(iter(topology.outputs)))
    folders = [topology.base_dir] if topology.base_dir is not None else []
    add_import_paths([*folders, Path.cwd()])

    table_schemas = check_tables(checker)
    stages: list[CheckedStage] = []
    reaching: list[Schema | None] = []  # per stage, the schema of the records entering it
    schema, untyped = source_schema, False  # with the fields the joins so far add
    warnings: list[Problem] = []
    for index, stage in enumerate(topology.stages):
        reaching.append(schema)
        before = len(checker.problems)
        if isinstance(stage, JoinStage):
            path = f"stages[{index}].join"
            if stage.join.stream is not None:
                schema = check_stream_join(checker, path, stage.join, schema)
            else:
                schema = check_join(checker, path, stage.join, schema, table_schemas)
            if len(checker.problems) == before:
                stages.append(CheckedStage(index, "join", stage, _join_output(stage, schema)))
            continue
        checked = _check_stage(checker, index, stage, schema)
        if checked is not None:
            stages.append(checked)
        if isinstance(stage, MapStage):
            output = stage.spec.output
            if output is None:
                untyped = True
                warnings.append(
                    Problem(
                        f"stages[{index}].map",
                        "no output: schema, so the stages after it and the sink are checked "
                        "at run time only; declare output: to check them here",
                    )
                )
            else:
                schema = checker.store.get(output) if output in checker.store else None
                untyped = False

    output_fields: dict[str, str] = {}
    if schema is not None and not untyped:
        route = route_of(topology.stages)
        if route is not None:
            for name in route.sinks:
                if name in sink_schemas:
                    fields = _check_stateless_sink(
                        checker, schema, sink_schemas[name], f"sinks.{name}.schema"
                    )
                    output_fields = output_fields or fields
        elif sink_schema is not None:
            output_fields = _check_sink(checker, reaching, schema, sink_schema)

    if checker.problems or source_schema is None or sink_schema is None:
        raise TopologyError(topology.origin, checker.problems, topology.lines)
    return CheckedTopology(
        topology=topology,
        source_schema=source_schema,
        sink_schema=sink_schema,
        stages=tuple(stages),
        output_fields=output_fields,
        warnings=tuple(warnings),
        sink_schemas=sink_schemas,
        table_schemas=table_schemas,
        stream_schemas={
            s.name: store.get(s.schema_name)
            for s in topology.sources
            if s.name in joined_stream_names(topology)
        },
        schemas=tuple(
            {
                s.name: s
                for s in [
                    *(store.get(x.schema_name) for x in topology.sources),
                    *sink_schemas.values(),
                    *(c.output_schema for c in stages if c.output_schema is not None),
                    *table_schemas.values(),
                ]
            }.values()
        ),
    )


def _check_file_sink(checker: _Checker, name: str, sink: FileSink, schema: Schema) -> None:
    """A Parquet sink's schema must be flat; `partition_by` fields must be simple values."""
    if sink.files.format == "parquet":
        for problem in parquet_problems(schema):
            checker.problem(f"sinks.{name}.schema", problem)
    named = avro_types.named_types(schema)
    for i, key in enumerate(sink.files.partition_by):
        path = f"sinks.{name}.files.partition_by[{i}]"
        key_type = checker.field_type(path, schema, key, "partition_by")
        if key_type is not None and not avro_types.can_be_key(key_type, named):
            checker.problem(
                path,
                f"field {key!r} is {avro_types.describe(key_type, named)}; a folder name needs "
                "a string, number, boolean or enum",
            )


def _join_output(stage: JoinStage, records: Schema | None) -> str:
    spec = stage.join
    if records is None:
        return "records"
    named = avro_types.named_types(records)
    added = {name: avro_types.describe(records.fields[name], named) for name in spec.fields}
    if spec.stream is not None:
        return f"the record plus {_fields_text(added)} ({spec.type} join)"
    return f"the record plus {_fields_text(added)} (no match: {spec.missing.replace('_', ' ')})"


def _check_sources(checker: _Checker) -> Schema | None:
    first: Schema | None = None
    for i, source in enumerate(checker.topology.sources):
        schema = checker.schema(f"sources[{i}].schema", source.schema_name)
        if schema is None:
            continue
        first = first or schema
        named = avro_types.named_types(schema)
        path = f"sources[{i}].event_time"
        event_type = checker.field_type(path, schema, source.event_time, "event time")
        if event_type is not None and not (
            avro_types.is_millis_long(event_type, named) or avro_types.is_string(event_type, named)
        ):
            checker.problem(
                path,
                f"event time field {source.event_time!r} is "
                f"{avro_types.describe(event_type, named)}; "
                "expected long timestamp-millis (or long epoch milliseconds) or an ISO-8601 string",
            )
        if source.partitioned_by is not None:
            checker.field_type(
                f"sources[{i}].partitioned_by", schema, source.partitioned_by, "partitioned_by"
            )
    return first


def _compile(
    checker: _Checker, path: str, expr: str, schema: Schema | None, *, expect_bool: bool
) -> Expression | None:
    try:
        expression = compile_expression(
            expr,
            schema.fields if schema is not None else None,
            schema_name=schema.name if schema is not None else None,
        )
    except ExpressionError as exc:
        checker.problem(path, str(exc))
        return None
    if schema is not None:
        sample = checker.sample(schema)
        trouble = expression.probe(sample, expect_bool=expect_bool)
        if trouble is not None:
            checker.problem(path, f"{expr!r}: {trouble}")
            return None
        if expect_bool:
            expression.accelerate(sample)
    return expression


def _check_stage(
    checker: _Checker, index: int, stage: Stage, schema: Schema | None
) -> CheckedStage | None:
    path = f"stages[{index}].{stage_kind(stage)}"
    before = len(checker.problems)
    unchanged = schema.name if schema is not None else "records"
    expressions: dict[str, Expression] = {}
    function: MapFunction | None = None
    output_schema: Schema | None = None
    output = unchanged

    if isinstance(stage, ValidateStage):
        for r, rule in enumerate(stage.validation.rules):
            compiled = _compile(
                checker, f"{path}.rules[{r}].expr", rule.expr, schema, expect_bool=True
            )
            if compiled is not None:
                expressions[rule.name] = compiled
        output = f"{unchanged} (failures: {stage.validation.on_failure.replace('_', ' ')})"
    elif isinstance(stage, FilterStage):
        compiled = _compile(checker, path, stage.filter, schema, expect_bool=True)
        if compiled is not None:
            expressions["filter"] = compiled
    elif isinstance(stage, MapStage):
        function = _check_map(checker, path, stage)
        if stage.spec.output is not None:
            output_schema = checker.schema(f"{path}.output", stage.spec.output)
            if output_schema is not None:
                named = avro_types.named_types(output_schema)
                output = f"{output_schema.name} " + _fields_text(
                    {n: avro_types.describe(t, named) for n, t in output_schema.fields.items()}
                )
        else:
            sink = ", ".join(
                dict.fromkeys(s.schema_name for s in checker.topology.outputs.values())
            )
            output = f"dict returned by {stage.reference} (fitted to {sink} at run time)"
    elif isinstance(stage, KeyByStage):
        key_expression, output = _check_key(checker, path, stage, schema)
        if key_expression is not None:
            expressions["key_by"] = key_expression
    elif isinstance(stage, RouteStage):
        for b, branch in enumerate(stage.route):
            if branch.when is not None:
                compiled = _compile(
                    checker, f"{path}[{b}].when", branch.when, schema, expect_bool=True
                )
                if compiled is not None:
                    expressions[f"route[{b}]"] = compiled
        output = "to " + ", ".join(stage.sinks)
    elif isinstance(stage, WindowStage) and schema is not None:
        _check_aggregates(checker, path, stage.window, schema)
        output = _fields_text(_window_fields(checker.topology, stage.window, schema))

    if len(checker.problems) > before:
        return None
    return CheckedStage(
        index, stage_kind(stage), stage, output, expressions, function, output_schema
    )


def _check_map(checker: _Checker, path: str, stage: MapStage) -> MapFunction | None:
    try:
        function = (
            import_callable(stage.function) if isinstance(stage.function, str) else stage.function
        )
    except CallableError as exc:
        checker.problem(path, str(exc))
        return None
    try:
        inspect.signature(function).bind({})
    except TypeError:
        checker.problem(path, f"{stage.reference} must take one argument, the record dict")
        return None
    except ValueError:
        pass  # builtins without a signature: trust them
    if not _calls_fit(checker, path, stage, function):
        return None
    return function


def _calls_fit(checker: _Checker, path: str, stage: MapStage, function: MapFunction) -> bool:
    """`threads` runs a plain function; a plain function runs concurrently only in threads."""
    spec = stage.spec
    if inspect.iscoroutinefunction(function):
        if spec.threads is not None:
            checker.problem(
                f"{path}.threads",
                f"{stage.reference} is async def: its calls share the event loop, "
                "threads run plain functions; remove threads",
            )
            return False
    elif (spec.concurrency or 1) > 1 and spec.threads is None:
        checker.problem(
            f"{path}.concurrency",
            f"{stage.reference} is a plain function: set threads: N to run "
            f"{spec.concurrency} calls at once in a thread pool, or make it async def",
        )
        return False
    circuit = spec.circuit
    if circuit is not None and circuit.on_open == "pause":
        checker.problem(
            f"{path}.circuit.on_open",
            "pause is not supported yet; on_open: retry_topic sends the records to the retry "
            "topic while the circuit is open",
        )
        return False
    if circuit is not None and checker.topology.retry.topic_attempts < 1:
        checker.problem(
            f"{path}.circuit",
            "an open circuit sends its records to the retry topic to wait: set "
            "retry.topic_attempts to 1 or more",
        )
        return False
    return _retry_budget_fits(checker, path, stage)


def _retry_budget_fits(checker: _Checker, path: str, stage: MapStage) -> bool:
    """With a `timeout`, a record's in-line attempts end well inside the transaction timeout."""
    spec = stage.spec
    if spec.timeout is None:
        return True
    retry = spec.retry or checker.topology.retry
    budget = retry.attempts * (spec.timeout + retry.backoff.max)
    limit = DEFAULT_TRANSACTION_TIMEOUT_MS // 2
    if budget <= limit:
        return True
    where = f"{path}.retry" if spec.retry else "retry"
    checker.problem(
        f"{path}.timeout",
        f"the in-line retry budget, {retry.attempts} attempts x ({spec.timeout} ms timeout + "
        f"{retry.backoff.max} ms longest backoff) = {budget} ms, does not fit well inside the "
        f"transaction timeout ({DEFAULT_TRANSACTION_TIMEOUT_MS} ms): keep it within {limit} ms "
        f"(fewer attempts in {where}, a shorter timeout or backoff.max); a record that "
        "exhausts its attempts goes to the retry topic",
    )
    return False


def _check_key(
    checker: _Checker, path: str, stage: KeyByStage, schema: Schema | None
) -> tuple[Expression | None, str]:
    key = stage.key_by
    if isinstance(key, str):
        if schema is None:
            return None, f"key {key}"
        key_type = checker.field_type(path, schema, key, "key")
        named = avro_types.named_types(schema)
        if key_type is not None and not avro_types.can_be_key(key_type, named):
            checker.problem(
                path,
                f"field {key!r} is {avro_types.describe(key_type, named)}; a key must be a string, "
                "number, boolean or enum",
            )
        described = avro_types.describe(key_type, named) if key_type is not None else "?"
        return None, f"keyed by {key} ({described})"
    expression = _compile(checker, f"{path}.expr", key.expr, schema, expect_bool=False)
    return expression, f"keyed by {key.name} = {key.expr}"


def _check_aggregates(checker: _Checker, path: str, window: WindowSpec, schema: Schema) -> None:
    for output, call in window.aggregate.items():
        problem = aggregate_input_problem(call, schema)
        if problem is not None:
            checker.problem(f"{path}.aggregate.{output}", problem)


def _text(call: AggregateCall) -> str:
    return f"{call.function}({call.field or ''})"


def aggregate_input_problem(call: AggregateCall, schema: Schema) -> str | None:
    """Why an aggregate's input field does not suit its function, or None when it does."""
    if call.field is None:
        return None
    if call.field not in schema.fields:
        return (
            f"unknown field {call.field!r} (input of {_text(call)}); "
            f"fields of {schema.name}: {', '.join(schema.fields)}"
        )
    named = avro_types.named_types(schema)
    input_type = schema.fields[call.field]
    described = avro_types.describe(input_type, named)
    if call.function in ("sum", "avg") and not avro_types.is_number(input_type, named):
        return f"{_text(call)} needs a number, but {call.field!r} is {described}"
    if call.function in ("min", "max") and not avro_types.is_ordered(input_type, named):
        return (
            f"{_text(call)} needs a number, string or timestamp, but {call.field!r} is {described}"
        )
    return None


def aggregate_output_type(call: AggregateCall, schema: Schema) -> Any | None:
    """The Avro type of an aggregate's result; None when its input does not suit it.

    count -> long; avg -> double; sum -> long over int/long, double over
    float/double; min, max, first, last -> the input's type (a sink field of a
    wider type, such as long for int, fits by Avro promotion).
    """
    if aggregate_input_problem(call, schema) is not None:
        return None
    if call.function == "count":
        return "long"
    if call.function == "avg":
        return "double"
    assert call.field is not None
    input_type = schema.fields[call.field]
    if call.function == "sum":
        named = avro_types.named_types(schema)
        return "long" if avro_types.is_integer(input_type, named) else "double"
    return input_type


def _check_sink(
    checker: _Checker, reaching: list[Schema | None], last: Schema, sink: Schema
) -> dict[str, str]:
    """Checks the sink against `last`, the schema of the records leaving the last stage
    (the source's, or the last typed map's); `reaching` is each stage's input schema."""
    topology = checker.topology
    window, key = topology.window, topology.key_by
    if window is not None and key is not None:
        return _check_window_sink(checker, reaching, sink, window, key)
    return _check_stateless_sink(checker, last, sink, checker.sink_path)


def _check_window_sink(
    checker: _Checker,
    reaching: list[Schema | None],
    sink: Schema,
    window: WindowSpec,
    key: KeyByStage,
) -> dict[str, str]:
    topology = checker.topology
    index = next(i for i, s in enumerate(topology.stages) if isinstance(s, WindowStage))
    key_index = next(i for i, s in enumerate(topology.stages) if isinstance(s, KeyByStage))
    source, keyed = reaching[index], reaching[key_index]
    if source is None or keyed is None:
        return {}  # a missing output schema, reported at its map
    source_named = avro_types.named_types(source)
    sink_named = avro_types.named_types(sink)
    produced: dict[str, tuple[str, Any]] = {}  # sink field -> (stage path, type it gets)

    key_path = f"stages[{key_index}].key_by"
    key_type: Any = None
    if isinstance(key.key_by, str):
        key_type = keyed.fields.get(key.key_by)
    else:
        key_path += ".name"
        key_type = _key_expression_type(checker, key_index, keyed)
    produced[key.key_name] = (key_path, key_type)
    produced["window_start"] = (f"stages[{index}].window", "long")
    produced["window_end"] = (f"stages[{index}].window", "long")
    for output, call in window.aggregate.items():
        produced[output] = (
            f"stages[{index}].window.aggregate.{output}",
            aggregate_output_type(call, source),
        )

    for name, (path, value_type) in produced.items():
        role = (
            "the key" if name == key.key_name
            else f"the window {name.removeprefix('window_')}" if name in WINDOW_BOUNDS
            else _text(window.aggregate[name])
        )  # fmt: skip
        if name not in sink.fields:
            checker.problem(
                checker.sink_path if name in WINDOW_BOUNDS else path,
                f"{sink.name} has no field {name!r} for {role}"
                + (" (long timestamp-millis)" if name in WINDOW_BOUNDS else "")
                + f"; its fields: {', '.join(sink.fields)}",
            )
            continue
        sink_type = sink.fields[name]
        if name in WINDOW_BOUNDS:
            if not avro_types.is_millis_long(sink_type, sink_named, nullable=True):
                checker.problem(
                    checker.sink_path,
                    f"{sink.name} field {name!r} is {avro_types.describe(sink_type, sink_named)}; "
                    "expected long timestamp-millis",
                )
            continue
        if value_type is None:
            continue
        merged = {**source_named, **sink_named}
        if not avro_types.fits(value_type, sink_type, merged):
            checker.problem(
                path,
                f"{role} gives {avro_types.describe(value_type, source_named)}, but {sink.name} "
                f"field {name!r} is {avro_types.describe(sink_type, sink_named)}",
            )

    for name, sink_type in sink.fields.items():
        if name not in produced and not _has_default(sink, name):
            checker.problem(
                checker.sink_path,
                f"{sink.name} field {name!r} "
                f"({avro_types.describe(sink_type, sink_named)}, no default) "
                f"is not produced by the window; it writes: {', '.join(produced)}",
            )
    return {
        name: avro_types.describe(sink.fields[name], sink_named)
        for name in produced
        if name in sink.fields
    }


def _key_expression_type(checker: _Checker, key_index: int, source: Schema) -> Any:
    stage = checker.topology.stages[key_index]
    assert isinstance(stage, KeyByStage) and not isinstance(stage.key_by, str)
    try:
        expression = compile_expression(stage.key_by.expr, source.fields)
        result = expression.evaluate(checker.sample(source))
    except Exception:
        return None  # reported by the stage check, or value-dependent
    return avro_types.python_value_type(result)


def _has_default(schema: Schema, name: str) -> bool:
    return any(f["name"] == name and "default" in f for f in schema.definition.get("fields", []))


def _check_stateless_sink(
    checker: _Checker, source: Schema, sink: Schema, path: str
) -> dict[str, str]:
    named = {**avro_types.named_types(source), **avro_types.named_types(sink)}
    for name, sink_type in sink.fields.items():
        if name not in source.fields:
            if not _has_default(sink, name):
                checker.problem(
                    path,
                    f"{sink.name} field {name!r} "
                    f"({avro_types.describe(sink_type, named)}, no default) "
                    f"is not in {source.name}, which reaches the sink unchanged; add a map stage "
                    "or a default",
                )
            continue
        if not avro_types.fits(source.fields[name], sink_type, named):
            checker.problem(
                path,
                f"{sink.name} field {name!r} is {avro_types.describe(sink_type, named)}, but "
                f"{source.name} gives {avro_types.describe(source.fields[name], named)}",
            )
    return {name: avro_types.describe(t, named) for name, t in sink.fields.items()}


def _window_text(window: WindowSpec) -> str:
    if window.tumbling is not None:
        kind = f"tumbling {format_duration(window.tumbling)}"
    elif window.hopping is not None:
        kind = (
            f"hopping {format_duration(window.hopping.size)} "
            f"every {format_duration(window.hopping.advance)}"
        )
    else:
        assert window.session is not None
        kind = f"session gap {format_duration(window.session.gap)}"
    aggregates = ", ".join(f"{name} = {_text(call)}" for name, call in window.aggregate.items())
    return (
        f"{kind}, allowed lateness {format_duration(window.allowed_lateness)}, "
        f"emit {window.emit}: {aggregates}"
    )


def _stage_text(stage: Stage) -> str:
    if isinstance(stage, ValidateStage):
        return ", ".join(
            f"{r.name}: {r.expr}" + (" (warn)" if r.severity == "warn" else "")
            for r in stage.validation.rules
        )
    if isinstance(stage, FilterStage):
        return stage.filter
    if isinstance(stage, MapStage):
        return stage.reference
    if isinstance(stage, KeyByStage):
        return (
            stage.key_by
            if isinstance(stage.key_by, str)
            else f"{stage.key_by.name} = {stage.key_by.expr}"
        )
    if isinstance(stage, RouteStage):
        return "; ".join(
            f"{b.when} -> {', '.join(b.targets)}"
            if b.when is not None
            else f"otherwise -> {', '.join(b.targets)}"
            for b in stage.route
        )
    if isinstance(stage, JoinStage):
        spec = stage.join
        if spec.stream is not None:
            on = (
                spec.left_on
                if spec.left_on == spec.right_on
                else f"{spec.left_on} = {spec.right_on}"
            )
            within = format_duration(spec.within or 0)
            return f"{spec.type} join stream {spec.stream} on {on} within {within}"
        return f"table {spec.table} on {spec.on}"
    return _window_text(stage.window)


def _window_fields(topology: Topology, window: WindowSpec, schema: Schema) -> dict[str, str]:
    """The fields of a window's results, with the types they get, for the stage chain."""
    named = avro_types.named_types(schema)
    fields: dict[str, str] = {}
    key = topology.key_by
    if key is not None:
        if isinstance(key.key_by, str):
            key_type = schema.fields.get(key.key_by)
            fields[key.key_name] = avro_types.describe(key_type, named) if key_type else "?"
        else:
            fields[key.key_name] = f"value of {key.key_by.expr}"
    fields["window_start"] = fields["window_end"] = "long (timestamp-millis)"
    for output, call in window.aggregate.items():
        output_type = aggregate_output_type(call, schema)
        fields[output] = avro_types.describe(output_type, named) if output_type else "?"
    return fields


def _fields_text(fields: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{name}: {kind}" for name, kind in fields.items()) + "}"


def render_chain(checked: CheckedTopology) -> str:
    """The stage chain as `streamline validate` prints it: sources, stages and outputs, sink."""
    topology = checked.topology
    source_named = avro_types.named_types(checked.source_schema)
    source_fields = {
        name: avro_types.describe(t, source_named)
        for name, t in checked.source_schema.fields.items()
    }
    lines = [f"{topology.name} (version {topology.version}) {topology.origin}"]
    for i, source in enumerate(topology.sources):
        fields = source_fields
        own = checked.stream_schemas.get(source.name)
        if own is not None:  # a joined stream, with a schema of its own
            own_named = avro_types.named_types(own)
            fields = {n: avro_types.describe(t, own_named) for n, t in own.fields.items()}
        lines.append(
            f"  sources[{i}] {source.name}: topic {source.topic} -> {source.schema_name} "
            f"{_fields_text(fields)}; event time {source.event_time}, watermark "
            f"{format_duration(source.watermark.max_out_of_orderness)} out of order"
        )
    for stage in checked.stages:
        lines.append(f"  {stage.path} {_stage_text(stage.stage)}")
        lines.append(f"      -> {stage.output}")
    written = f" {_fields_text(checked.output_fields)}" if checked.output_fields else ""
    if topology.sinks is None and topology.sink is not None:
        sink = topology.sink
        lines.append(f"  sink: topic {sink.topic} <- {sink.schema_name}{written}")
    for name, output in (topology.sinks or {}).items():
        if isinstance(output, FileSink):
            files = output.files
            by = f", partitioned by {', '.join(files.partition_by)}" if files.partition_by else ""
            where = (
                f"{files.format} files in {files.path}{by}, rolled every "
                f"{format_duration(files.roll.every)} or at {files.roll.max_bytes} bytes"
            )
        elif isinstance(output, WebhookSink):
            where = f"webhook {output.webhook.url}, batches of {output.webhook.batch}"
        else:
            where = f"topic {output.topic}"
        lines.append(f"  sinks.{name}: {where} <- {output.schema_name}")
    lines.append(f"  fingerprint {checked.fingerprint} (header {checked.header_value})")
    return "\n".join(lines)
