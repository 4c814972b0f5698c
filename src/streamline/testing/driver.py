"""`TopologyDriver`: a topology run in this process, without a broker, exactly as `streamline run` runs it.

The driver wires the loop's own objects around an in-memory stand-in for the broker
(`memory.py`): the pipeline's stages and codecs, `process_batch` (the loop's step), the
record collector with its dead-letter, retry and late writes, the repartitioner and its
watermark markers, and the tasks with their window stages over real state stores (in a
temporary folder) restored from their changelogs. Only the clients are replaced, and the
wall clock: processing time moves when the test says so, so every run is deterministic.

Consumption follows the loop: piped records become visible on their source topic and
are read in batches; records written to the repartition topic become visible when
their transaction commits and are read after it; retry records come back once their
not-before time has passed on the driver's clock.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from streamline import headers as h
from streamline.observability.lineage import LINEAGE_TOPIC, run_event
from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.runtime.batch import process_batch
from streamline.runtime.collector import RecordCollector
from streamline.runtime.failures import FailedRecords
from streamline.runtime.operators import (
    Changes,
    OperatorStore,
    restore_store,
)
from streamline.runtime.pipeline import Pipeline
from streamline.runtime.record import Record
from streamline.runtime.repartition import RepartitionEncoder, Repartitioner
from streamline.runtime.stream_join_stage import StreamJoinSettings, StreamJoinStage
from streamline.runtime.task import Task, TaskOutputs, partition_runs
from streamline.runtime.transaction import Transaction
from streamline.runtime.windowed import SourceWatermarks, WindowSettings, window_stage
from streamline.serde import SchemaStore
from streamline.serde.codec import DecodeError
from streamline.serde.formats import codec_for
from streamline.testing.memory import Entry, MemoryProducer, Topics
from streamline.testing.tables import TableFeeder
from streamline.topology import CheckedTopology, Topology, TopologyBuilder, check_topology
from streamline.topology.loader import load_topology
from streamline.topology.model import Sink as TopicSink

TP = tuple[str, int]
INSTANCE = "driver"
"""The instance id the driver runs as (in its transactional id)."""
MEMORY = "memory"
"""The driver's stand-in for the bootstrap servers (lineage datasets: kafka://memory)."""
Failures = list[tuple[Record, Failure]]
TopologyLike = str | os.PathLike[str] | Topology | TopologyBuilder | CheckedTopology
KeyLike = str | bytes | Callable[[Any], str | bytes | None] | None
Value = dict[str, Any] | bytes | None
Piped = Value | tuple[str | bytes | None, Value]


@dataclass(frozen=True)
class OutputRecord:
    """A record the topology wrote, decoded, with its headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any] | None
    """The decoded record: the sink record, or for dead-letter, retry and late records the
    source record they hold (None when those bytes do not decode, e.g. garbage piped in)."""
    raw: bytes | None
    """The record's bytes as written."""
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    def header(self, name: str) -> bytes | None:
        """The value of header `name`, if the record has it."""
        return next((v for k, v in self.headers if k == name), None)


def load_checked(
    topology: TopologyLike, schemas: str | os.PathLike[str] | SchemaStore | None = None
) -> tuple[CheckedTopology, SchemaStore]:
    """The type-checked topology and its schemas: a YAML path, a model, a builder or a checked one.

    Schemas: `schemas`, else `STREAMLINE_SCHEMAS`, else `schemas/` beside the topology's
    folder, else `./schemas` (as the CLI finds them).
    """
    if isinstance(topology, CheckedTopology):
        if not isinstance(schemas, SchemaStore):
            raise TypeError("a checked topology needs its SchemaStore as `schemas`")
        return topology, schemas
    if isinstance(topology, TopologyBuilder):
        topology = topology.build()
    if not isinstance(topology, Topology):
        topology = load_topology(Path(topology))
    if isinstance(schemas, SchemaStore):
        store = schemas
    else:
        env = os.environ.get("STREAMLINE_SCHEMAS")
        store = SchemaStore(Path(schemas or env or topology.schemas_dir or "schemas"))
    return check_topology(topology, store), store


class _Tasks:
    """The tasks of the stateful input, one per partition (the `TaskManager`'s part the loop uses)."""

    def __init__(self, retry_topic: str) -> None:
        self._retry_topic = retry_topic
        self.tasks: dict[int, Task] = {}

    def process(
        self, records: list[Record], wall_ms: int, txn: Transaction, failures: Failures
    ) -> None:
        tasks = self.tasks
        for partition, run in partition_runs(records, self._retry_topic):
            tasks[partition].process(run, wall_ms, txn, failures)

    def punctuate(
        self, wall_ms: int, open_txn: Callable[[], Transaction], failures: Failures
    ) -> None:
        for task in self.tasks.values():
            task.punctuate(wall_ms, open_txn, failures)

    def prepare_commit(self) -> list[tuple[str, int, Changes]]:
        return [change for task in self.tasks.values() for change in task.prepare_commit()]

    def post_commit(self, offsets: Mapping[TP, int]) -> None:
        for task in self.tasks.values():
            task.post_commit(offsets)

    def close(self, clean: bool) -> None:
        for task in self.tasks.values():
            task.close(clean)
        self.tasks.clear()


class TopologyDriver:
    """Pipes records through a topology in this process and returns what it writes.

    - `pipe(source, records)` writes records (dicts, or raw bytes) to a source and
      processes them; with `auto_commit` (the default) each batch is committed.
    - `output()`, `dead_letters()`, `late()` and `retries()` return the committed records
      of the sink, dead-letter, late and retry topics.
    - `advance_wall_clock(ms)` moves processing time (idleness, retry backoff);
      `flush()` moves it past the idle timeout, so every window that can close does.
    - `commit()` commits the open transaction; `crash()` drops everything uncommitted and
      starts over from the committed state, reprocessing the uncommitted input.
    """

    def __init__(
        self,
        topology: TopologyLike,
        schemas: str | os.PathLike[str] | SchemaStore | None = None,
        *,
        partitions: int = 1,
        state_dir: str | os.PathLike[str] | None = None,
        auto_commit: bool = True,
        wall_clock_ms: int = 0,
        batch_size: int = 2000,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.checked, self.schemas = load_checked(topology, schemas)
        self.topology = self.checked.topology
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="streamline-driver-")
            state_dir = self._tmp.name
        self.state_dir = Path(state_dir)
        self.metrics = Metrics(self.topology.name)
        self.pipeline = pipeline = Pipeline.from_checked(
            self.checked, self.schemas, self.metrics, self.state_dir
        )
        self.partitions = partitions
        self.auto_commit = auto_commit
        self.batch_size = batch_size
        self._wall_ms = wall_clock_ms
        self.tables = TableFeeder(self.topology.name, pipeline.tables, partitions)
        """`driver.tables.pipe(table, rows)` writes rows to a table's topic."""
        self.topics = Topics(partitions)
        # inputs are written in the first source's (first) format; outputs read as the sink's
        self._source_codec = codec_for(
            self.topology.source.formats[0], self.schemas, self.checked.source_schema
        )
        self._sink_codec = pipeline.encode.codec
        self._sink_codecs = {
            sink.topic: codec_for(sink.format, self.schemas, self.checked.sink_schemas[name])
            for name, sink in self.topology.outputs.items()
            if isinstance(sink, TopicSink)
        }
        consumed = list(pipeline.source_topics)
        if pipeline.retrying:
            consumed.append(self.topology.retry_topic)
        if pipeline.repartition:
            consumed.append(pipeline.window_input_topic)
        self._consumed = consumed
        self._cursor = dict.fromkeys(consumed, 0)
        self._committed_cursor = dict(self._cursor)
        self._positions: dict[TP, int] = {}
        self._start()

    # --- a process of the topology -----------------------------------------------------

    def _clock(self) -> float:
        return self._wall_ms / 1000

    def _wall(self) -> int:
        return self._wall_ms

    def _start(self) -> None:
        """What a process starting does: new in-memory objects, tasks restored from changelogs."""
        pipeline, topology = self.pipeline, self.topology
        wall_ms = self._wall_ms
        self.collector = collector = RecordCollector(
            lambda on_delivery: MemoryProducer(self.topics, on_delivery),
            lambda _error, _topic: None,
            pipeline.lineage_outputs,
            sink_checksum=pipeline.sink_checksum,
            warnings=pipeline.warns,
        )
        watermark = topology.source.watermark
        self.source_watermarks = SourceWatermarks(
            watermark.max_out_of_orderness, watermark.idle_timeout
        )
        sources = [(t, p) for t in pipeline.source_topics for p in range(self.partitions)]
        self.repartitioner: Repartitioner | None = None
        if pipeline.repartition:
            assert topology.key_by is not None
            self.repartitioner = Repartitioner(
                collector, self.source_watermarks, pipeline.window_input_topic, self.partitions,
                RepartitionEncoder.of(topology),
                max(pipeline.commit_interval_ms, watermark.idle_timeout // 2),
                lambda _tp: True,  # everything piped is read before the clock moves on
                clock=self._clock,
            )  # fmt: skip
        self.failed = FailedRecords(collector, pipeline, clock=self._clock)
        metrics = self.metrics
        outputs = TaskOutputs(
            collector, self.failed,
            lambda records, failures: pipeline.encode_records(records, failures, metrics),
            pipeline.sink_topic, pipeline.header_topology,
        )  # fmt: skip
        self.tasks = _Tasks(topology.retry_topic)
        joins = StreamJoinSettings.of(self.checked, self.state_dir)
        tasks: list[Task] = []
        if joins is not None:
            tasks = [
                Task(topology.source.topic, p, [StreamJoinStage(joins, p, 0, wall_ms, metrics)],
                     outputs)
                for p in range(self.partitions)
            ]  # fmt: skip
        elif pipeline.windowed:
            settings = WindowSettings.of(topology, self.state_dir, pipeline.repartition)
            upstream = sources if pipeline.repartition else None
            tasks = [
                Task(settings.input_topic, p, [window_stage(settings, p, 0, upstream, wall_ms)],
                     outputs)
                for p in range(self.partitions)
            ]  # fmt: skip
        for task in tasks:
            for bound in task.stores:
                self._restore(bound.spec.topic, task.partition, bound)
            for op in task.operators:
                op.started(wall_ms)
            self.tasks.tasks[task.partition] = task
        for tp in sources:
            self.source_watermarks.assign(tp, wall_ms)
        self.txn: Transaction | None = None

    def _restore(self, topic: str, partition: int, bound: OperatorStore) -> None:
        history = [e for e in self.topics.visible(topic) if e.partition == partition]
        high = history[-1].offset + 1 if history else 0

        def chunks(start: int) -> Iterator[Changes]:
            yield [(cast(bytes, e.key), e.value) for e in history if e.offset >= start]

        restore_store(bound, partition, high, chunks, lambda: high)

    # --- the loop ------------------------------------------------------------------------

    def _open(self) -> Transaction:
        if self.txn is None:
            self.collector.begin()
            self.txn = Transaction()
        return self.txn

    def _next_batch(self) -> list[Record]:
        """The next records to read, up to `batch_size`: sources, due retries, repartition."""
        batch: list[Record] = []
        retry_topic = self.topology.retry_topic
        for topic in self._consumed:
            room = self.batch_size - len(batch)
            if room <= 0:
                break
            start = self._cursor[topic]
            entries = self.topics.visible(topic)[start : start + room]
            if topic == retry_topic:
                due = 0
                for e in entries:
                    if int(_header(e.headers, h.RETRY_NOT_BEFORE) or b"0") > self._wall_ms:
                        break
                    due += 1
                entries = entries[:due]
            for e in entries:
                batch.append(Record(e.topic, e.partition, e.offset, e.key, e.value, e.headers))
            self._cursor[topic] = start + len(entries)
        return batch

    def _step(self) -> bool:
        """One step of the loop: a batch, what is due by time, and markers when they changed."""
        batch = self._next_batch()
        if batch:
            txn = self._open()
            failures: Failures = []
            process_batch(
                self.pipeline, batch, txn, failures, self.metrics, self.collector,
                self.source_watermarks, self.repartitioner, self.tasks, self._open, self._wall,
            )  # fmt: skip
            self.failed.send(failures, txn)
            txn.read(batch, self._positions)
        if self.tasks.tasks:
            failures = []
            self.tasks.punctuate(self._wall_ms, self._open, failures)
            if failures:
                self.failed.send(failures, self._open())
        if self.txn is None and self.repartitioner and self.repartitioner.markers_due():
            self._open()  # a transaction just for the markers: their commit writes them
        return bool(batch)

    def _run(self) -> None:
        """Steps until everything readable is read (committing after each step with auto_commit)."""
        while True:
            progressed = self._step()
            if self.auto_commit and self.txn is not None:
                self._commit()
                continue
            if not progressed:
                return

    def _commit(self) -> None:
        """The commit cycle's steps: markers, changelogs, then the stores commit."""
        if self.txn is None:
            return
        collector = self.collector
        # Markers only when a watermark or idleness changed (the loop writes them on every
        # commit): reading unchanged markers back would open another commit, endlessly.
        if self.repartitioner is not None and self.repartitioner.markers_due():
            self.repartitioner.write_markers()
        for topic, partition, changes in self.tasks.prepare_commit():
            collector.send_changelog(topic, partition, changes)
        topology = self.topology
        if topology.lineage and self.txn.describes_data:
            collector.flush(0)  # the delivery reports: the output offset ranges
            event = run_event(
                topology.name, topology.version, self.pipeline.fingerprint,
                self.pipeline.transactional_id(INSTANCE), MEMORY,
                {tp: (a, b) for tp, (a, b) in self.txn.inputs.items()},
                {tp: (a, b) for tp, (a, b) in (collector.produced or {}).items()},
            )  # fmt: skip
            collector.produce(LINEAGE_TOPIC, topology.name.encode(), event, [])
        files = self.pipeline.files
        if files is not None:
            files.prepare()
        collector.producer.commit()
        self.txn = None
        collector.end()
        if files is not None:
            files.finalize()
        self._committed_cursor = dict(self._cursor)
        self.tasks.post_commit(dict(collector.changelog_offsets))

    # --- the test's side -----------------------------------------------------------------

    def pipe(
        self,
        source: str,
        records: Iterable[Piped] | dict[str, Any] | bytes,
        *,
        key: KeyLike = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Writes records to a source (its name or topic) and processes them.

        Dicts are encoded with the source schema (a record that does not fit raises
        `EncodeError` naming the field); bytes are written as they are, to test what
        undecodable input does. `key` is the Kafka key: bytes, a string, or a function
        of the record; a `(key, record)` pair gives one record its own key. Without
        `partition`, a keyed record goes to the partition librdkafka's default
        partitioner picks (CRC32 of the key), an unkeyed one to partition 0.
        """
        topic = self._source_topic(source)
        if isinstance(records, dict | bytes):
            records = [records]
        encode = self._source_codec.encode
        for src in self.topology.sources:  # a joined stream has a schema of its own
            own = self.checked.stream_schemas.get(src.name)
            if src.topic == topic and own is not None:
                encode = codec_for(src.formats[0], self.schemas, own).encode

        def keyed() -> Iterator[tuple[bytes | None, bytes | None]]:
            for item in records:
                if isinstance(item, tuple):
                    k, value = item
                else:
                    value = item
                    k = key(value) if callable(key) else key
                raw = encode(value, check=False) if isinstance(value, dict) else value
                yield (k.encode() if isinstance(k, str) else k), raw

        self.topics.extend(topic, keyed(), headers, -1 if partition is None else partition)
        self._run()

    def commit(self) -> None:
        """Commits the open transaction: its outputs become visible, its state durable.

        What the commit makes readable (repartitioned records, watermark markers) is
        processed and committed too, as the loop would within its next commit intervals.
        """
        self._commit()
        auto_commit, self.auto_commit = self.auto_commit, True
        try:
            self._run()
        finally:
            self.auto_commit = auto_commit

    def crash(self, *, lose_local_state: bool = False) -> None:
        """The process dies and a new one takes over from the last commit.

        The open transaction's writes and uncommitted state are dropped; the stores are
        restored from their committed changelogs (from the local checkpoint on, or with
        `lose_local_state` from the beginning, as on a new machine); the input read
        since the last commit is read and processed again (a map runs a second time
        for those records).
        """
        self.collector.producer.purge()
        self.tasks.close(clean=False)
        if self.pipeline.files is not None:  # buffers are lost; files settle as on assignment
            self.pipeline.files.abort()
            committed = {(t, p): 0 for t in self._consumed for p in range(self.partitions)}
            for topic, cursor in self._committed_cursor.items():
                for e in self.topics.visible(topic)[:cursor]:
                    committed[(topic, e.partition)] = e.offset + 1
            self.pipeline.files.recover(committed)
        if lose_local_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self._cursor = dict(self._committed_cursor)
        self._start()
        self._run()

    def advance_wall_clock(self, ms: int) -> None:
        """Moves processing time on by `ms` and runs what becomes due (idleness, retries)."""
        if ms < 0:
            raise ValueError("the wall clock only moves forward")
        self._wall_ms += ms
        self._run()

    def flush(self) -> None:
        """Moves processing time past the idle timeout: every window that can close does.

        A window closes when the watermark, which follows the event times piped, passes
        its end (plus allowed lateness). With a repartition, the watermark is the minimum
        over the source partitions that are not idle; once every source is idle it is
        the highest of theirs, as on Kafka when the input stops.
        """
        self.advance_wall_clock(self.topology.source.watermark.idle_timeout)

    def close(self) -> None:
        """Closes the stores and removes the driver's temporary state folder."""
        self.tasks.close(clean=False)
        self.tables.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> TopologyDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what the topology wrote ---------------------------------------------------------

    def output(self, sink: str | None = None) -> list[OutputRecord]:
        """The committed sink records, decoded with the sink schema, in the order written.

        `sink`: a sink's name (of `sinks:`) or topic; the default (first) sink without it.
        """
        named = self.topology.outputs.get(sink or "")
        if named is not None and not isinstance(named, TopicSink):
            raise ValueError(f"{sink!r} is a file or webhook sink: read its files or receiver")
        topic = named.topic if named is not None else sink or self.pipeline.sink_topic
        codec = self._sink_codecs.get(topic, self._sink_codec)
        decode = codec.decode
        return [_output(e, decode(e.value)) for e in self.topics.visible(topic)]

    def dead_letters(self) -> list[OutputRecord]:
        """The committed dead letters: the source record as it came in, and why it failed."""
        return self._failed(self.topology.dead_letter_topic)

    def late(self) -> list[OutputRecord]:
        """The committed late records, with the watermark they missed (`streamline.watermark`)."""
        return self._failed(self.topology.late_topic)

    def retries(self) -> list[OutputRecord]:
        """Every record written to the retry topic (committed), with its attempt headers."""
        return self._failed(self.topology.retry_topic)

    def lineage(self) -> list[dict[str, Any]]:
        """The OpenLineage RunEvents of the committed transactions (with `lineage: true`).

        Each names the input and output offset ranges of one transaction; the
        namespace of their datasets is `kafka://memory`.
        """
        return [json.loads(e.value or b"{}") for e in self.topics.visible(LINEAGE_TOPIC)]

    def _failed(self, topic: str) -> list[OutputRecord]:
        out = []
        for e in self.topics.visible(topic):
            try:
                value: dict[str, Any] | None = self._source_codec.decode(e.value)
            except DecodeError:
                value = None
            out.append(_output(e, value))
        return out

    def _source_topic(self, source: str) -> str:
        for s in self.topology.sources:
            if source in (s.name, s.topic):
                return s.topic
        names = ", ".join(s.name for s in self.topology.sources)
        raise ValueError(f"{source!r} is not a source of {self.topology.name} (sources: {names})")


def _header(headers: list[tuple[str, bytes]] | None, name: str) -> bytes | None:
    return next((v for k, v in headers or () if k == name), None)


def _output(entry: Entry, value: dict[str, Any] | None) -> OutputRecord:
    return OutputRecord(
        entry.topic,
        entry.partition,
        entry.offset,
        entry.key,
        value,
        entry.value,
        list(entry.headers or []),
    )
