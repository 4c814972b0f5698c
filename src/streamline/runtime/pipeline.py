"""A checked topology turned into what the processing loop runs: stages, codecs and topics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from streamline.errors import UsageError
from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.reliability.retry import RetryPolicy
from streamline.runtime.record import Record
from streamline.runtime.stages import (
    Decode,
    Encode,
    EventTime,
    Filter,
    KeyBy,
    Map,
    Stage,
    Validate,
)
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import CheckedTopology
from streamline.topology.model import (
    FilterStage,
    KeyByStage,
    MapStage,
    ValidateStage,
)


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
    encode: Encode
    checked: CheckedTopology

    @classmethod
    def from_checked(cls, checked: CheckedTopology, store: SchemaStore) -> Pipeline:
        """The runnable form of `checked`; `store` resolves writer schemas by fingerprint."""
        topology = checked.topology
        if topology.window is not None:
            raise UsageError(f"{topology.origin}: window stages are not supported by this runtime yet")
        source_codec = AvroCodec(store, checked.source_schema)
        retry = topology.retry
        policy = RetryPolicy(
            attempts=retry.attempts,
            initial_ms=retry.backoff.initial,
            multiplier=retry.backoff.multiplier,
            max_ms=retry.backoff.max,
            jitter=retry.backoff.jitter,
        )
        stages: list[Stage] = [
            Decode("decode", {s.topic: source_codec for s in topology.sources}),
            EventTime("sources[0].event_time", topology.source.event_time),
        ]
        for cs in checked.stages:
            stage = cs.stage
            if isinstance(stage, ValidateStage):
                rules = [(rule.name, cs.expressions[rule.name]) for rule in stage.validation.rules]
                stages.append(Validate(cs.path, rules, stage.validation.on_failure == "dead_letter"))
            elif isinstance(stage, FilterStage):
                stages.append(Filter(cs.path, cs.expressions["filter"]))
            elif isinstance(stage, MapStage):
                assert cs.function is not None
                stages.append(Map(cs.path, cs.function, policy))
            elif isinstance(stage, KeyByStage):
                key = stage.key_by
                if isinstance(key, str):
                    stages.append(KeyBy(cs.path, field=key))
                else:
                    stages.append(KeyBy(cs.path, expr=cs.expressions["key_by"]))
        return cls(
            group_id=topology.group_id,
            source_topics=[s.topic for s in topology.sources],
            sink_topic=topology.sink.topic,
            dead_letter_topic=topology.dead_letter_topic,
            exactly_once=topology.guarantee == "exactly_once",
            commit_interval_ms=topology.commit_interval,
            header_topology=topology.header_value.encode(),
            stages=stages,
            encode=Encode("sink", AvroCodec(store, checked.sink_schema)),
            checked=checked,
        )

    @property
    def owned_topics(self) -> list[str]:
        """Topics this topology writes to, which must exist before it runs."""
        return [self.sink_topic, self.dead_letter_topic]

    def transactional_id(self, instance_id: str) -> str:
        return self.checked.topology.transactional_id(instance_id)

    def process(
        self, batch: list[Record], failures: list[tuple[Record, Failure]], metrics: Metrics
    ) -> list[tuple[Record, bytes]]:
        """Runs the batch through every stage; returns (record, sink bytes) for each output."""

        def failed(record: Record, failure: Failure) -> None:
            failures.append((record, failure))

        def dropped(stage: str, reason: str, n: int) -> None:
            metrics.dropped(stage, reason, n)

        records = batch
        for stage in self.stages:
            if not records:
                break
            started = time.perf_counter()
            n = len(records)
            records = stage.process(records, failed, dropped)
            metrics.observe_stage(stage.name, time.perf_counter() - started, n)
        if not records:
            return []
        started = time.perf_counter()
        out = self.encode.encode(records, failed)
        metrics.observe_stage("sink", time.perf_counter() - started, len(records))
        return out

