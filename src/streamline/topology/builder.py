"""Declaring a topology in Python; the result is the same `Topology` model a YAML file gives.

    from streamline.topology.builder import Topology

    topology = (
        Topology("revenue-per-minute", version="3")
        .source(name="orders", topic="orders", schema="com.example.Order",
                event_time="created_at", max_out_of_orderness="5s")
        .validate(rules={"amount_positive": "amount > 0.0"})
        .filter("status == 'PAID'")
        .key_by("customer_id")
        .window(tumbling="1m", aggregate={"order_count": "count()", "revenue": "sum(amount)"})
        .to(topic="revenue-per-minute", schema="com.example.CustomerRevenue")
    )

Each method mirrors a key of the file and takes the values the file takes
(durations as strings). Top-level options (`guarantee`, `retry`, `freshness`,
...) are keyword arguments of the constructor. `to()` ends the chain and
returns the validated model; invalid input raises the same TopologyError as a
file, with paths like `stages[2].filter`.

`map()` also takes a Python callable. The model keeps the object itself, so the
runtime calls exactly it; the canonical form and fingerprint name it
`module:qualname` (two lambdas of one module therefore fingerprint alike).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Self

from pydantic import BaseModel, ValidationError

from streamline.topology.errors import TopologyError, problems_from_validation_error
from streamline.topology.model import API_VERSION, Freshness, Retry
from streamline.topology.model import Topology as TopologyModel


def _given(**options: Any) -> dict[str, Any]:
    """The options that were passed, so the model fills in the defaults of the rest."""
    return {key: value for key, value in options.items() if value is not None}


class TopologyBuilder:
    """Collects a topology key by key, in the order of the file, and validates it at the end."""

    def __init__(
        self,
        name: str,
        *,
        version: str,
        guarantee: Literal["exactly_once", "at_least_once"] | None = None,
        commit_interval: str | None = None,
        retry: Retry | Mapping[str, Any] | None = None,
        dead_letter_topic: str | None = None,
        late_topic: str | None = None,
        freshness: Freshness | Mapping[str, Any] | None = None,
        lineage: bool | None = None,
    ) -> None:
        self._name = name
        self._top: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "name": name,
            "version": version,
            **_given(
                guarantee=guarantee,
                commit_interval=commit_interval,
                retry=_plain(retry),
                dead_letter_topic=dead_letter_topic,
                late_topic=late_topic,
                freshness=_plain(freshness),
                lineage=lineage,
            ),
        }
        self._sources: list[dict[str, Any]] = []
        self._tables: list[dict[str, Any]] = []
        self._stages: list[dict[str, Any]] = []
        self._sink: dict[str, Any] | None = None

    def source(
        self,
        *,
        name: str,
        topic: str,
        schema: str,
        event_time: str,
        max_out_of_orderness: str,
        idle_timeout: str | None = None,
        partitioned_by: str | None = None,
        format: str | list[str] | None = None,
    ) -> Self:
        """Add an input topic (`sources[]`); call again for more sources of the same schema."""
        self._sources.append(
            {
                "name": name,
                "topic": topic,
                "schema": schema,
                "event_time": event_time,
                **_given(partitioned_by=partitioned_by, format=format),
                "watermark": {
                    "max_out_of_orderness": max_out_of_orderness,
                    **_given(idle_timeout=idle_timeout),
                },
            }
        )
        return self

    def validate(
        self,
        rules: Mapping[str, str] | Sequence[Mapping[str, str]],
        *,
        on_failure: Literal["dead_letter", "drop"] | None = None,
    ) -> Self:
        """A validate stage; `rules` as {name: expr}, or as the file's list of {name, expr}."""
        if isinstance(rules, Mapping):
            listed = [{"name": name, "expr": expr} for name, expr in rules.items()]
        else:
            listed = [dict(rule) for rule in rules]
        self._stages.append({"validate": {"rules": listed, **_given(on_failure=on_failure)}})
        return self

    def filter(self, expr: str) -> Self:
        """A filter stage: records for which the CEL `expr` is false are dropped."""
        self._stages.append({"filter": expr})
        return self

    def map(
        self,
        function: str | Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        output: str | None = None,
    ) -> Self:
        """A map stage: `"module:function"`, or the callable itself; `output`: the schema of
        what it returns (later stages and the sink are checked against it)."""
        self._stages.append(
            {"map": function if output is None else {"fn": function, "output": output}}
        )
        return self

    def key_by(
        self, field: str | None = None, *, name: str | None = None, expr: str | None = None
    ) -> Self:
        """The grouping key: a field (`key_by("customer_id")`) or `key_by(name=..., expr=...)`."""
        if (field is None) == (name is None and expr is None):
            raise TypeError("key_by() takes a field name, or name= and expr=, not both")
        key: Any = field if field is not None else {"name": name, "expr": expr}
        self._stages.append({"key_by": key})
        return self

    def window(
        self,
        *,
        aggregate: Mapping[str, str],
        tumbling: str | None = None,
        hopping: Mapping[str, str] | None = None,
        session: Mapping[str, str] | None = None,
        allowed_lateness: str | None = None,
        emit: Literal["final", "update"] | None = None,
    ) -> Self:
        """The window stage: one of tumbling="1m", hopping={size, advance}, session={gap}."""
        self._stages.append(
            {
                "window": _given(
                    tumbling=tumbling,
                    hopping=dict(hopping) if hopping is not None else None,
                    session=dict(session) if session is not None else None,
                    allowed_lateness=allowed_lateness,
                    aggregate=dict(aggregate),
                    emit=emit,
                )
            }
        )
        return self

    def table(
        self,
        name: str,
        *,
        topic: str,
        schema: str,
        key: str | None = None,
        global_: bool | None = None,
        history: str | None = None,
        valid_from: str | None = None,
    ) -> Self:
        """A `tables:` item; `history` makes it versioned (`versioned: {history: ...}`)."""
        table: dict[str, Any] = {"name": name, "topic": topic, "schema": schema}
        table |= _given(key=key, valid_from=valid_from)
        if global_ is not None:
            table["global"] = global_
        if history is not None:
            table["versioned"] = {"history": history}
        self._tables.append(table)
        return self

    def join(
        self,
        table: str,
        *,
        on: str,
        fields: Mapping[str, str],
        missing: Literal["dead_letter", "drop", "null"] | None = None,
    ) -> Self:
        """A join stage: adds `fields` ({new field: table field}) of `table`'s row for `on`."""
        spec = {"table": table, "on": on, "fields": dict(fields), **_given(missing=missing)}
        self._stages.append({"join": spec})
        return self

    def join_stream(
        self,
        stream: str,
        *,
        on: str | Mapping[str, str],
        within: str,
        fields: Mapping[str, str],
        type: Literal["inner", "left", "outer"] | None = None,
        allowed_lateness: str | None = None,
    ) -> Self:
        """A stream-stream join with the source named `stream` (`on`: a field name, or
        {"left": ..., "right": ...}); adds `fields` ({new field: that stream's field})."""
        spec = {
            "stream": stream,
            "on": on if isinstance(on, str) else dict(on),
            "within": within,
            "fields": dict(fields),
            **_given(type=type, allowed_lateness=allowed_lateness),
        }
        self._stages.append({"join": spec})
        return self

    def to(self, *, topic: str, schema: str, format: str | None = None) -> TopologyModel:
        """Set the sink and return the validated topology (`build()`)."""
        self._sink = {"topic": topic, "schema": schema, **_given(format=format)}
        return self.build()

    def build(self) -> TopologyModel:
        """The validated `Topology` model; TopologyError listing every problem otherwise."""
        data = {**self._top, "sources": self._sources, "stages": self._stages}
        if self._tables:
            data["tables"] = self._tables
        if self._sink is not None:
            data["sink"] = self._sink
        try:
            return TopologyModel.model_validate(data)
        except ValidationError as exc:
            raise TopologyError(
                f"topology {self._name!r}", problems_from_validation_error(exc)
            ) from None


def _plain(value: BaseModel | Mapping[str, Any] | None) -> Any:
    if value is None or isinstance(value, BaseModel):
        return value
    return dict(value)


Topology = TopologyBuilder
"""The builder under the name topologies are written with: `Topology("name", version="1")`."""
