"""A checked topology turned into what the processing loop runs: stages, codecs and topics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.reliability.retry import RetryPolicy
from streamline.runtime.calls import map_stage
from streamline.runtime.join_operator import Join
from streamline.runtime.record import Record
from streamline.runtime.route import Router, router_of
from streamline.runtime.route import sink_schema_id as sink_schema_id_of
from streamline.runtime.sink_encode import Encode, unchanged_header
from streamline.runtime.sinks.files import FileSinks
from streamline.runtime.stages import (
    Decode,
    Evaluable,
    EventTime,
    Filter,
    FitOutput,
    KeyBy,
    Map,
    Stage,
    TrackNulls,
    Validate,
    VerifyChecksum,
)
from streamline.runtime.table_operator import TableState
from streamline.runtime.tables import table_state
from streamline.serde import SchemaStore
from streamline.serde.fit import RecordFit
from streamline.serde.formats import SchemaRegistry, codec_for
from streamline.topology import CheckedTopology
from streamline.topology.model import (
    FilterStage,
    JoinStage,
    KeyByStage,
    MapStage,
    Topology,
    ValidateStage,
)
from streamline.topology.resources import TopologyResources, resources_of


@dataclass
class Pipeline:
    """The stateless stage chain of one topology and the names the runtime needs."""

    group_id: str
    source_topics: list[str]
    sink_topic: str
    dead_letter_topic: str
    exactly_once: bool
    commit_interval_ms: int
    header_topology: bytes
    stages: list[Stage]
    retry_policy: RetryPolicy
    encode: Encode
    checked: CheckedTopology
    resources: TopologyResources
    windowed: bool = False
    repartition: bool = False
    sink_checksum: bool = False
    """Outputs carry `streamline.checksum` (`sink.checksum: true`)."""
    warns: bool = False
    """Some validate stage has warn rules: outputs may carry `streamline.quality.warnings`."""
    reporting: list[Validate | TrackNulls | Map] = field(default_factory=list)
    """Stages with counts for the metrics, reported once per batch."""
    router: Router | None = None
    """The route stage, sending each output to its sinks (`sinks:`); None with one sink."""
    files: FileSinks | None = None
    """The file sinks, whose files the commit cycle prepares, finalizes and recovers; their
    `roll.every` is then the commit interval."""
    tables: TableState = field(default_factory=lambda: TableState([]))
    """The table partitions the join stages look up in (filled by the table manager)."""
    joined_topic: str | None = None
    """The topic of the source that feeds a stream join only (None without one)."""
    joined_stages: list[Stage] = field(default_factory=list)
    """What that source's records go through instead of the stages: decode, event time."""

    @classmethod
    def from_checked(
        cls,
        checked: CheckedTopology,
        store: SchemaStore,
        metrics: Metrics | None = None,
        state_dir: Path = Path(".streamline/state"),
        registry: SchemaRegistry | None = None,
    ) -> Pipeline:
        """The runnable form of `checked`; `store` resolves writer schemas by fingerprint,
        `registry` by Schema Registry id (needed by a `confluent-avro` source or sink).

        `metrics` counts join misses and `state_dir` holds the tables (topologies with joins).
        """
        topology = checked.topology
        tables = table_state(checked, store, state_dir, registry)
        resources = resources_of(topology)
        joined = checked.stream_schemas  # sources feeding a stream join, with their schemas
        source_codecs = {
            s.topic: codec_for(s.format, store, checked.source_schema, registry)
            for s in topology.sources
            if s.name not in joined
        }
        every_format = list(
            dict.fromkeys(f for s in topology.sources if s.name not in joined for f in s.formats)
        )
        source_codecs[topology.retry_topic] = codec_for(
            every_format, store, checked.source_schema, registry
        )
        sink = topology.sink
        sink_format = sink.format if sink is not None else "avro"
        sink_schema_id = (
            sink_schema_id_of("sink", sink, checked.sink_schema, registry) if sink else None
        )
        retry = topology.retry
        policy = RetryPolicy(
            attempts=retry.attempts,
            initial_ms=retry.backoff.initial,
            multiplier=retry.backoff.multiplier,
            max_ms=retry.backoff.max,
            jitter=retry.backoff.jitter,
        )
        verified = frozenset(s.topic for s in topology.sources if s.verify_checksum)
        stages: list[Stage] = [VerifyChecksum("checksum", verified)] if verified else []
        stages += [
            Decode("decode", source_codecs),
        ]
        if topology.quality.track_nulls:
            stages.append(TrackNulls("quality.track_nulls", list(topology.quality.track_nulls)))
        stages.append(EventTime("sources[0].event_time", topology.source.event_time))
        warns = False
        router, files = router_of(checked, store, registry)
        for cs in checked.stages:
            stage = cs.stage
            if isinstance(stage, ValidateStage):
                rules: dict[str, list[tuple[str, Evaluable]]] = {"error": [], "warn": []}
                for rule in stage.validation.rules:
                    rules[rule.severity].append((rule.name, cs.expressions[rule.name]))
                warns = warns or bool(rules["warn"])
                stages.append(
                    Validate(
                        cs.path,
                        rules["error"],
                        stage.validation.on_failure == "dead_letter",
                        rules["warn"],
                    )
                )
            elif isinstance(stage, FilterStage):
                stages.append(Filter(cs.path, cs.expressions["filter"]))
            elif isinstance(stage, MapStage):
                assert cs.function is not None
                stages.append(map_stage(cs.path, cs.function, stage.spec, policy))
                if cs.output_schema is not None:
                    stages.append(FitOutput(cs.path, RecordFit(cs.output_schema)))
            elif isinstance(stage, JoinStage) and stage.join.stream is None:
                stages.append(
                    Join(cs.path, stage.join, tables, topology.retry_topic, metrics or Metrics("-"))
                )
            elif isinstance(stage, KeyByStage):
                key = stage.key_by
                if isinstance(key, str):
                    stages.append(KeyBy(cs.path, field=key))
                else:
                    stages.append(KeyBy(cs.path, expr=cs.expressions["key_by"]))
        sink_codec = codec_for(sink_format, store, checked.sink_schema, registry, sink_schema_id)
        joined_stages: list[Stage] = []  # a joined stream's own decode and event time
        for source in topology.sources:
            if source.name in joined:
                codec = codec_for(source.format, store, joined[source.name], registry)
                if source.verify_checksum:
                    joined_stages.append(VerifyChecksum("checksum", frozenset([source.topic])))
                joined_stages.append(Decode("decode", {source.topic: codec}))
                path = f"sources[{topology.sources.index(source)}].event_time"
                joined_stages.append(EventTime(path, source.event_time))
        return cls(
            group_id=topology.group_id,
            source_topics=[s.topic for s in topology.sources],
            sink_topic=topology.sink.topic if topology.sink is not None else "",
            dead_letter_topic=topology.dead_letter_topic,
            exactly_once=topology.guarantee == "exactly_once",
            commit_interval_ms=(
                topology.commit_interval if files is None else int(files.roll_every_s * 1000)
            ),
            header_topology=checked.header_value.encode(),
            stages=stages,
            retry_policy=policy,
            encode=Encode(
                "sink",
                sink_codec,
                None
                if resources.windowed or router is not None or joined
                else unchanged_header(stages, list(source_codecs.values()), sink_codec),
            ),
            checked=checked,
            resources=resources,
            windowed=resources.windowed,
            repartition=resources.needs_repartition,
            sink_checksum=topology.sink is not None and topology.sink.checksum,
            warns=warns,
            reporting=[s for s in stages if isinstance(s, Validate | TrackNulls | Map)],
            router=router,
            files=files,
            tables=tables,
            joined_topic=next((s.topic for s in topology.sources if s.name in joined), None),
            joined_stages=joined_stages,
        )

    @property
    def topology(self) -> Topology:
        return self.checked.topology

    @property
    def holds(self) -> bool:
        """Whether a map holds records of earlier batches whose calls have not completed."""
        return any(getattr(stage, "holds", False) for stage in self.stages)

    @property
    def owned_topics(self) -> list[str]:
        """Topics this topology reads or writes besides its sources, which must exist before it runs."""
        return self.resources.required_topics

    @property
    def fingerprint(self) -> str:
        """The run fingerprint (definition, schema files, map code, streamline version)."""
        return self.checked.fingerprint

    @property
    def retrying(self) -> bool:
        """Whether map failures go through the retry topic before they become dead letters."""
        return self.resources.retrying

    @property
    def changelog_topic(self) -> str:
        """The window store's changelog ("" without a window: there is no state to log)."""
        return self.resources.changelog_topic or ""

    @property
    def window_input_topic(self) -> str:
        """The topic whose partitions the window tasks read (the first source without a window)."""
        return self.resources.window_input_topic or self.source_topics[0]

    @property
    def lineage_outputs(self) -> frozenset[str]:
        """Topics whose produced offsets a lineage event lists as outputs."""
        return self.resources.lineage_outputs

    def transactional_id(self, instance_id: str) -> str:
        return self.resources.transactional_id(instance_id)

    def process(
        self,
        batch: list[Record],
        failures: list[tuple[Record, Failure]],
        metrics: Metrics,
        drops: dict[str, int] | None = None,
    ) -> list[tuple[Record, bytes]]:
        """Runs the batch through every stage; returns (record, sink bytes) for each output."""
        records = self.run_stages(batch, failures, metrics, drops)
        if not records:
            return []
        return self.encode_records(records, failures, metrics)

    def encode_records(
        self, records: list[Record], failures: list[tuple[Record, Failure]], metrics: Metrics
    ) -> list[tuple[Record, bytes]]:
        """(record, sink bytes) of records whose value is a sink record; misfits fail."""
        started = time.perf_counter()
        out = self.encode.encode(records, lambda r, f: failures.append((r, f)))
        metrics.observe_stage("sink", time.perf_counter() - started, len(records))
        return out

    def run_stateful_input(
        self,
        batch: list[Record],
        failures: list[tuple[Record, Failure]],
        metrics: Metrics,
        drops: dict[str, int] | None = None,
    ) -> list[Record]:
        """The records for the tasks: the stages' outputs and, with a stream join, the
        joined stream's records, decoded with its own schema (they skip the stages)."""
        joined = self.joined_topic
        if joined is None:
            return self.run_stages(batch, failures, metrics, drops)
        left = self.run_stages([r for r in batch if r.topic != joined], failures, metrics, drops)
        right = [r for r in batch if r.topic == joined]
        for stage in self.joined_stages:
            if not right:
                break
            right = stage.process(right, lambda r, f: failures.append((r, f)), lambda *_: None)
        return left + right

    def run_stages(
        self,
        batch: list[Record],
        failures: list[tuple[Record, Failure]],
        metrics: Metrics,
        drops: dict[str, int] | None = None,
    ) -> list[Record]:
        """The records that come out of the stateless stages (decode to key_by).

        Records dropped on purpose are counted in the metrics and, by reason, in `drops`
        (the open transaction's, for its lineage event).
        """

        if not batch and not self.holds:
            return batch

        def failed(record: Record, failure: Failure) -> None:
            failures.append((record, failure))

        def dropped(stage: str, reason: str, n: int) -> None:
            metrics.dropped(stage, reason, n)
            if drops is not None:
                drops[reason] = drops.get(reason, 0) + n

        records = batch
        for stage in self.stages:
            if not records and not self.holds:
                break
            started = time.perf_counter()
            n = len(records)
            records = stage.process(records, failed, dropped)
            metrics.observe_stage(stage.name, time.perf_counter() - started, n)
        for reporting in self.reporting:
            reporting.report(metrics)
        return records
