"""Prometheus metrics of one running topology: what the runtime reports, and how it reports it.

``Metrics`` owns every ``streamline_*`` series of one topology in its own
``CollectorRegistry`` (never the process-global one), so several topologies or
tests can live in one process. Every series carries a ``topology`` label; the
other labels (``topic``, ``partition``, ``stage``, ...) are as listed on each
method.

The runtime calls the small typed methods (``records_in``, ``observe_stage``,
``partitions.set_lag``, ...) on its hot path. Each caches the label child it writes to, so
a repeated call is a dict lookup plus one locked add: no label formatting, no
lookup in prometheus_client's own child table.

Counters also export ``*_created`` series (prometheus_client's default); set
``PROMETHEUS_DISABLE_CREATED_SERIES=true`` in the environment to drop them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from threading import Lock
from time import monotonic
from typing import Final, Generic, Literal, TypeVar, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX: Final[str] = "streamline_"
"""Prefix of every metric name."""

SlaStatus = Literal["ok", "late", "breached"]
"""Freshness SLA status of a partition (docs/topology.md, "Freshness")."""

RebalanceKind = Literal["assigned", "revoked", "lost"]
"""What a rebalance callback did to this instance's partitions."""

SLA_STATUSES: Final[tuple[SlaStatus, ...]] = get_args(SlaStatus)
REBALANCE_KINDS: Final[tuple[RebalanceKind, ...]] = get_args(RebalanceKind)

STAGE_BUCKETS: Final[tuple[float, ...]] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Buckets of ``stage_seconds``: one batch through one stage, 100µs to 10s."""

LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Buckets of ``end_to_end_latency_seconds``: 10ms to 10min."""

COMMIT_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Buckets of ``transaction_commit_seconds``: 5ms to 1min."""

QUALITY_WINDOW_S: Final[float] = 300.0
"""The sliding window of ``quality_ratio`` and ``field_null_ratio``: the last 5 minutes."""

M = TypeVar("M", bound=MetricWrapperBase)
_GaugeFactory = Callable[..., "_Family[Gauge]"]
_CounterFactory = Callable[..., "_Family[Counter]"]


class SlidingRatio:
    """numerator / denominator summed over the last ``window_s`` seconds, in ten slices.

    ``add`` is called once per batch; ``value`` (read at scrape time) is NaN while the
    window holds no records.
    """

    __slots__ = ("_clock", "_lock", "_slice_s", "_slices")

    def __init__(self, window_s: float = QUALITY_WINDOW_S, clock: Callable[[], float] = monotonic):
        self._slice_s = window_s / 10
        self._clock = clock
        self._slices: deque[list[float]] = deque()  # [slice index, numerator, denominator]
        self._lock = Lock()

    def add(self, numerator: int, denominator: int) -> None:
        index = int(self._clock() // self._slice_s)
        with self._lock:
            slices = self._slices
            if slices and slices[-1][0] == index:
                slices[-1][1] += numerator
                slices[-1][2] += denominator
            else:
                slices.append([index, numerator, denominator])
            self._expire(index)

    def value(self) -> float:
        with self._lock:
            self._expire(int(self._clock() // self._slice_s))
            den = sum(s[2] for s in self._slices)
            return sum(s[1] for s in self._slices) / den if den else float("nan")

    def _expire(self, index: int) -> None:
        slices = self._slices
        while slices and slices[0][0] <= index - 10:
            slices.popleft()


class _Family(Generic[M]):
    """One labelled metric with ``topology`` pre-bound, and a cache of its children.

    Keys are the remaining label values as the runtime passes them (partitions
    as ``int``), so the hot path never formats a label.
    """

    __slots__ = ("_children", "_metric", "_topology")

    def __init__(self, metric: M, topology: str) -> None:
        self._metric = metric
        self._topology = topology
        self._children: dict[tuple[object, ...], M] = {}

    def child(self, *labels: object) -> M:
        """The series for these label values (after ``topology``), created on first use."""
        try:
            return self._children[labels]
        except KeyError:
            child = self._children[labels] = self._metric.labels(self._topology, *labels)
            return child

    def remove(self, *labels: object) -> None:
        """Stops exporting the series for these label values, if it exists."""
        if self._children.pop(labels, None) is not None:
            self._metric.remove(self._topology, *labels)


class _BatchHistogram(Collector):
    """A histogram fed a batch of observations at a time, for per-record values.

    prometheus_client's ``Histogram.observe`` takes two locks and scans the
    buckets for every value (~1µs); this takes one lock per batch and bisects.
    Exports the same ``_bucket``/``_count``/``_sum`` samples.
    """

    def __init__(
        self, name: str, documentation: str, topology: str, buckets: tuple[float, ...]
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._topology = topology
        self._bounds = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last one counts values above every bound
        self._sum = 0.0
        self._lock = Lock()

    def observe_many(self, values: Iterable[float]) -> None:
        """Adds every value in ``values`` to the histogram."""
        bounds, counts = self._bounds, self._counts
        total = 0.0
        with self._lock:
            for v in values:
                counts[bisect_left(bounds, v)] += 1  # bucket ``le`` is inclusive
                total += v
            self._sum += total

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=["topology"])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        cumulative: list[tuple[str, float]] = []
        seen = 0
        for bound, n in zip(self._bounds, counts[:-1], strict=True):
            seen += n
            cumulative.append((repr(bound), seen))  # as prometheus_client writes ``le``
        cumulative.append(("+Inf", seen + counts[-1]))
        family = HistogramMetricFamily(self._name, self._documentation, labels=["topology"])
        family.add_metric([self._topology], cumulative, total)
        yield family


class Metrics:
    """Every Prometheus series of one topology, and the methods the runtime records them with.

    Scrape it with ``render()`` (or serve it with ``MetricsServer``); read one
    value back in tests with ``value()``. Safe to write from one thread while
    HTTP threads scrape: prometheus_client locks each value.

    The per-partition gauges live in ``partitions`` (``PartitionMetrics``) and the
    state stores' in ``stores`` (``StoreMetrics``). Per-partition *counters*
    (``records_in_total``) are kept: their total stays true, and dropping them
    would lose increments since the last scrape and show Prometheus a reset.
    """

    def __init__(self, topology: str) -> None:
        self.topology: Final[str] = topology
        self.registry: Final[CollectorRegistry] = CollectorRegistry()
        self._ready = False
        self._info_labels: tuple[str, str] | None = None

        def counter(name: str, doc: str, *labels: str) -> _Family[Counter]:
            metric = Counter(PREFIX + name, doc, ("topology", *labels), registry=self.registry)
            return _Family(metric, topology)

        def gauge(name: str, doc: str, *labels: str) -> _Family[Gauge]:
            metric = Gauge(PREFIX + name, doc, ("topology", *labels), registry=self.registry)
            return _Family(metric, topology)

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], *labels: str
        ) -> _Family[Histogram]:
            metric = Histogram(
                PREFIX + name, doc, ("topology", *labels), registry=self.registry, buckets=buckets
            )
            return _Family(metric, topology)

        self._records_in = counter(
            "records_in_total", "Records read from an input partition.", "topic", "partition"
        )
        self._records_out = counter(
            "records_out_total", "Records written to an output topic.", "topic"
        )
        self._dead_letters = counter(
            "dead_letters_total",
            "Records sent to the dead-letter topic, by error type and failing stage.",
            "error_type",
            "stage",
        )
        self._retries = counter("retries_total", "Retry attempts, by failing stage.", "stage")
        self._late = counter(
            "late_records_total",
            "Records that arrived after every window they belong to had fired.",
            "topic",
        )
        self._dropped = counter(
            "dropped_total",
            "Records dropped on purpose (filter false, validation drop, map returned None).",
            "stage",
            "reason",
        )
        self.quality: Final[QualityMetrics] = QualityMetrics(gauge, counter)
        self._stage_seconds = histogram(
            "stage_seconds",
            "Time one batch spent in a stage (observed once per batch; divide by "
            "stage_records_total for the time per record).",
            STAGE_BUCKETS,
            "stage",
        )
        self._stage_records = counter(
            "stage_records_total", "Records that entered a stage.", "stage"
        )
        self._latency = _BatchHistogram(
            PREFIX + "end_to_end_latency_seconds",
            "Output time minus event time, per output record.",
            topology,
            LATENCY_BUCKETS,
        )
        self.registry.register(self._latency)
        self.partitions: Final[PartitionMetrics] = PartitionMetrics(gauge)
        self._commit_seconds = histogram(
            "transaction_commit_seconds", "Time to commit one transaction.", COMMIT_BUCKETS
        ).child()
        self._transactions = counter("transactions_total", "Committed transactions.").child()
        self._aborts = counter(
            "transaction_aborts_total", "Aborted transactions, by reason.", "reason"
        )
        rebalances = counter("rebalances_total", "Rebalance callbacks, by kind.", "kind")
        self._rebalances = {kind: rebalances.child(kind) for kind in REBALANCE_KINDS}
        self.stores: Final[StoreMetrics] = StoreMetrics(gauge, counter)
        self.schema_registry: Final[SchemaRegistryMetrics] = SchemaRegistryMetrics(gauge, counter)
        self.tables: Final[TableMetrics] = TableMetrics(gauge, counter)
        self.stream_joins: Final[StreamJoinMetrics] = StreamJoinMetrics(gauge, counter)
        self.calls: Final[CallMetrics] = CallMetrics(gauge, counter, histogram)
        self.standby: Final[StandbyMetrics] = StandbyMetrics(gauge)
        self._assigned = gauge("assigned_partitions", "Input partitions held.").child()
        self._ready_gauge = gauge("ready", "1 while the topology is processing, else 0.").child()
        self._ready_gauge.set(0)
        self._info = gauge(
            "info",
            "Always 1; the labels carry the topology version and fingerprint.",
            "version",
            "fingerprint",
        )

    # Input and output

    def records_in(self, topic: str, partition: int, n: int = 1) -> None:
        """Counts ``n`` records read from ``topic``/``partition``."""
        self._records_in.child(topic, partition).inc(n)

    def records_out(self, topic: str, n: int = 1) -> None:
        """Counts ``n`` records written to ``topic``."""
        self._records_out.child(topic).inc(n)

    def dead_letter(self, error_type: str, stage: str, n: int = 1) -> None:
        """Counts ``n`` records dead-lettered by ``stage`` with ``error_type`` (e.g. ``decode``)."""
        self._dead_letters.child(error_type, stage).inc(n)

    def retry(self, stage: str, n: int = 1) -> None:
        """Counts ``n`` retry attempts of ``stage``."""
        self._retries.child(stage).inc(n)

    def late(self, topic: str, n: int = 1) -> None:
        """Counts ``n`` late records from ``topic`` (sent to the late topic)."""
        self._late.child(topic).inc(n)

    def dropped(self, stage: str, reason: str, n: int = 1) -> None:
        """Counts ``n`` records dropped on purpose by ``stage`` (e.g. ``filter``, ``false``)."""
        self._dropped.child(stage, reason).inc(n)

    # Timing

    def observe_stage(self, stage: str, seconds: float, n_records: int) -> None:
        """Records one batch of ``n_records`` that spent ``seconds`` in ``stage``."""
        self._stage_seconds.child(stage).observe(seconds)
        self._stage_records.child(stage).inc(n_records)

    def observe_latency(self, seconds: Iterable[float]) -> None:
        """Records the end-to-end latency (output time - event time) of each output record."""
        self._latency.observe_many(seconds)

    # Transactions and rebalances

    def transaction_committed(self, seconds: float) -> None:
        """Records one committed transaction whose commit took ``seconds``."""
        self._commit_seconds.observe(seconds)
        self._transactions.inc()

    def transaction_aborted(self, reason: str) -> None:
        """Counts one aborted transaction (``reason``: e.g. ``error``, ``shutdown``, ``fenced``)."""
        self._aborts.child(reason).inc()

    def rebalance(self, kind: RebalanceKind) -> None:
        """Counts one rebalance callback: partitions ``assigned``, ``revoked`` or ``lost``."""
        try:
            self._rebalances[kind].inc()
        except KeyError:
            raise ValueError(
                f"unknown rebalance kind {kind!r}; expected one of {REBALANCE_KINDS}"
            ) from None

    def set_assigned_partitions(self, n: int) -> None:
        """Sets how many input partitions this instance holds."""
        self._assigned.set(n)

    # Process

    @property
    def is_ready(self) -> bool:
        """What ``set_ready`` last said; the default readiness check of ``MetricsServer``."""
        return self._ready

    def set_ready(self, ready: bool) -> None:
        """Marks the topology ready (assigned, restored, processing) or not."""
        self._ready = ready
        self._ready_gauge.set(1 if ready else 0)

    def set_info(self, version: str, fingerprint: str) -> None:
        """Exports ``streamline_info{version, fingerprint} 1``, replacing any earlier pair."""
        if self._info_labels is not None:
            self._info.remove(*self._info_labels)
        self._info_labels = (version, fingerprint)
        self._info.child(version, fingerprint).set(1)

    # Reading back

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: object) -> float | None:
        """The current value of one sample, or None if it is not exported; for tests.

        ``name`` is the sample name with or without the ``streamline_`` prefix
        (``"records_in_total"``, ``"stage_seconds_count"``); ``topology`` is
        filled in unless given; label values may be ints.
        """
        if not name.startswith(PREFIX):
            name = PREFIX + name
        wanted = {"topology": self.topology} | {k: str(v) for k, v in labels.items()}
        return self.registry.get_sample_value(name, wanted)


class PartitionMetrics:
    """The per-partition gauges of the inputs: lag, committed offset, watermark, freshness.

    They are dropped by ``remove_partition`` when the partition is revoked, because a
    frozen value would be a lie.
    """

    def __init__(self, gauge: _GaugeFactory) -> None:
        self._lag = gauge(
            "consumer_lag",
            "Records between the consumer position and the end of the partition.",
            "topic",
            "partition",
        )
        self._committed = gauge("committed_offset", "Last committed offset.", "topic", "partition")
        self._watermark = gauge(
            "watermark_ms", "Event-time watermark, epoch milliseconds.", "topic", "partition"
        )
        self._watermark_lag = gauge(
            "watermark_lag_seconds",
            "Wall-clock time minus the watermark: the staleness the SLA status is judged on.",
            "topic",
            "partition",
        )
        self._staleness = gauge(
            "staleness_seconds",
            "Wall-clock time minus the newest event time seen (less than watermark_lag_seconds "
            "by up to max_out_of_orderness).",
            "topic",
            "partition",
        )
        self._sla_status = gauge(
            "sla_status",
            "Freshness SLA status: 1 for the current one of ok, late, breached; 0 for the others.",
            "topic",
            "partition",
            "status",
        )
        self._sla_children: dict[tuple[str, int], tuple[Gauge, ...]] = {}
        self._partition_gauges = (
            self._lag,
            self._committed,
            self._watermark,
            self._watermark_lag,
            self._staleness,
        )

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """Sets the consumer lag of ``topic``/``partition`` in records."""
        self._lag.child(topic, partition).set(lag)

    def set_committed_offset(self, topic: str, partition: int, offset: int) -> None:
        """Sets the last committed offset of ``topic``/``partition``."""
        self._committed.child(topic, partition).set(offset)

    def set_watermark(self, topic: str, partition: int, watermark_ms: int) -> None:
        """Sets the event-time watermark of ``topic``/``partition`` (epoch ms)."""
        self._watermark.child(topic, partition).set(watermark_ms)

    def set_watermark_lag(self, topic: str, partition: int, seconds: float) -> None:
        """Sets how far the watermark of ``topic``/``partition`` trails wall-clock time."""
        self._watermark_lag.child(topic, partition).set(seconds)

    def set_staleness(self, topic: str, partition: int, seconds: float) -> None:
        """Sets how far the newest event time of ``topic``/``partition`` trails wall-clock time."""
        self._staleness.child(topic, partition).set(seconds)

    def set_sla_status(self, topic: str, partition: int, status: SlaStatus) -> None:
        """Marks ``status`` as the current SLA status of ``topic``/``partition`` (1), others 0."""
        if status not in SLA_STATUSES:
            raise ValueError(f"unknown SLA status {status!r}; expected one of {SLA_STATUSES}")
        key = (topic, partition)
        children = self._sla_children.get(key)
        if children is None:
            children = tuple(self._sla_status.child(topic, partition, s) for s in SLA_STATUSES)
            self._sla_children[key] = children
        for s, child in zip(SLA_STATUSES, children, strict=True):
            child.set(1 if s == status else 0)

    def remove_partition(self, topic: str, partition: int) -> None:
        """Stops exporting the per-partition gauges of a revoked ``topic``/``partition``.

        ``records_in_total`` is kept (see the class docstring).
        """
        for family in self._partition_gauges:
            family.remove(topic, partition)
        if self._sla_children.pop((topic, partition), None) is not None:
            for s in SLA_STATUSES:
                self._sla_status.remove(topic, partition, s)


class StoreMetrics:
    """The gauges and counters of the state store partitions: keys held and restore progress."""

    def __init__(self, gauge: _GaugeFactory, counter: _CounterFactory) -> None:
        self._state_keys = gauge(
            "state_keys", "Keys in a state store partition.", "store", "partition"
        )
        self._restored = counter(
            "restore_records_total",
            "Changelog records replayed into a state store partition.",
            "store",
            "partition",
        )
        self._restore_remaining = gauge(
            "restore_remaining",
            "Changelog offsets left to replay before the store partition is ready (an upper "
            "bound on the records: compaction and transaction markers leave gaps).",
            "store",
            "partition",
        )

    def set_state_keys(self, store: str, partition: int, n: int) -> None:
        """Sets how many keys ``store`` holds for ``partition``."""
        self._state_keys.child(store, partition).set(n)

    def restored(self, store: str, partition: int, n: int) -> None:
        """Counts ``n`` changelog records replayed into ``store``/``partition``."""
        self._restored.child(store, partition).inc(n)

    def set_restore_remaining(self, store: str, partition: int, n: int) -> None:
        """Sets how many changelog offsets ``store``/``partition`` has left to replay."""
        self._restore_remaining.child(store, partition).set(n)

    def remove_store_partition(self, store: str, partition: int) -> None:
        """Stops exporting the gauges of a closed ``store``/``partition`` (counters are kept)."""
        self._state_keys.remove(store, partition)
        self._restore_remaining.remove(store, partition)


class TableMetrics:
    """Tables and joins: rows held, how far each table partition is behind its topic, misses."""

    def __init__(self, gauge: _GaugeFactory, counter: _CounterFactory) -> None:
        self._records = gauge(
            "table_records",
            "Rows a table holds on this instance (of a versioned table: versions), estimated.",
            "table",
        )
        self._lag = gauge(
            "table_lag",
            "Offsets of a table partition's topic not yet read into the table.",
            "table",
            "partition",
        )
        self._misses = counter(
            "join_misses_total", "Records a join stage found no table row for.", "stage"
        )

    def set_records(self, table: str, n: int) -> None:
        self._records.child(table).set(n)

    def set_lag(self, table: str, partition: int, n: int) -> None:
        self._lag.child(table, partition).set(n)

    def remove_partition(self, table: str, partition: int) -> None:
        self._lag.remove(table, partition)

    def missed(self, stage: str, n: int) -> None:
        self._misses.child(stage).inc(n)


class StandbyMetrics:
    """The gauge of the standby replicas: how far each one is behind its changelog."""

    def __init__(self, gauge: _GaugeFactory) -> None:
        self._lag = gauge(
            "standby_lag",
            "Changelog records a standby replica of a window partition has not read yet.",
            "partition",
        )

    def set_lag(self, partition: int, lag: int) -> None:
        self._lag.child(partition).set(lag)

    def remove(self, partition: int) -> None:
        """Stops exporting the lag of a standby this instance no longer keeps."""
        self._lag.remove(partition)


class QualityMetrics:
    """Data quality: broken validation rules, the share of records passing every rule, and
    the share of nulls in tracked fields (the ratios over a sliding window)."""

    def __init__(self, gauge: _GaugeFactory, counter: _CounterFactory) -> None:
        self._validation_failures = counter(
            "validation_failures_total",
            "Records that broke a validation rule, by validate stage, rule and severity.",
            "stage",
            "rule",
            "severity",
        )
        self._quality_ratio = gauge(
            "quality_ratio",
            "Share of the records entering a validate stage that passed every rule, over the "
            "last 5 minutes (NaN without records).",
            "stage",
        )
        self._null_ratio = gauge(
            "field_null_ratio",
            "Share of decoded input records holding null in a field listed under "
            "quality.track_nulls, over the last 5 minutes (NaN without records).",
            "field",
        )
        self._ratios: dict[tuple[str, str], SlidingRatio] = {}

    def validated(
        self, stage: str, failures: Mapping[tuple[str, str], int], seen: int, passed: int
    ) -> None:
        """A validate stage saw ``seen`` records, ``passed`` of them broke no rule;
        ``failures`` counts broken rules by (rule, severity)."""
        for (rule, severity), n in failures.items():
            self._validation_failures.child(stage, rule, severity).inc(n)
        self._ratio(self._quality_ratio, "stage", stage).add(passed, seen)

    def nulls(self, field: str, nulls: int, seen: int) -> None:
        """``nulls`` of ``seen`` decoded records held null in ``field``."""
        self._ratio(self._null_ratio, "field", field).add(nulls, seen)

    def _ratio(self, family: _Family[Gauge], kind: str, label: str) -> SlidingRatio:
        ratio = self._ratios.get((kind, label))
        if ratio is None:
            ratio = self._ratios[(kind, label)] = SlidingRatio()
            family.child(label).set_function(ratio.value)
        return ratio


class SchemaRegistryMetrics:
    """Lookups of writer schemas that wait for an unreachable Schema Registry."""

    def __init__(self, gauge: _GaugeFactory, counter: _CounterFactory) -> None:
        self._waiting = gauge(
            "schema_registry_waiting",
            "1 while processing waits for the Schema Registry to answer a schema lookup.",
        ).child()
        self._waited = counter(
            "schema_registry_wait_seconds_total",
            "Seconds processing waited for an unreachable Schema Registry.",
        ).child()
        self._stalls = counter(
            "schema_registry_stalls_total", "Times processing waited for the Schema Registry."
        ).child()

    def stall(self, waiting: bool, waited_s: float) -> None:
        """A lookup started waiting (`waiting`), or answered after `waited_s` seconds."""
        self._waiting.set(1 if waiting else 0)
        if waiting:
            self._stalls.inc()
        else:
            self._waited.inc(waited_s)


CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CallMetrics:
    """The calls of maps to the outside world: in flight, their duration, circuits.

    ``streamline_circuit_state`` is 0 closed, 1 half-open, 2 open.
    """

    def __init__(
        self,
        gauge: _GaugeFactory,
        counter: _CounterFactory,
        histogram: Callable[..., _Family[Histogram]],
    ) -> None:
        self._inflight = gauge("stage_inflight", "Calls of a map stage in flight.", "stage")
        self._seconds = histogram(
            "call_seconds", "Time one call of a map took (per call).", CALL_BUCKETS, "stage"
        )
        self._state = gauge(
            "circuit_state", "A map's circuit: 0 closed, 1 half-open, 2 open.", "stage"
        )
        self._transitions = counter(
            "circuit_transitions_total", "Changes of a map's circuit, by new state.", "stage", "to"
        )
        self._throttled = counter(
            "throttled_seconds_total", "Time a map's calls waited for its rate limit.", "stage"
        )

    def throttled(self, stage: str, seconds: float) -> None:
        self._throttled.child(stage).inc(seconds)

    def inflight(self, stage: str, n: int) -> None:
        self._inflight.child(stage).set(n)

    def observe(self, stage: str, durations: list[float]) -> None:
        """One observation per call."""
        child = self._seconds.child(stage)
        for seconds in durations:
            child.observe(seconds)

    def circuit(self, stage: str, to: str, value: int) -> None:
        """The circuit of `stage` moved to `to` (`value` its gauge value)."""
        self._state.child(stage).set(value)
        self._transitions.child(stage, to).inc()

    def circuit_state(self, stage: str, value: int) -> None:
        self._state.child(stage).set(value)


class StreamJoinMetrics:
    """Stream-stream joins: matches, unmatched records emitted, records buffered."""

    def __init__(self, gauge: _GaugeFactory, counter: _CounterFactory) -> None:
        self._matches = counter("join_matches_total", "Matches a stream join emitted.", "stage")
        self._unmatched = counter(
            "join_unmatched_total",
            "Records of a stream join's kept side (left, right) emitted without a match, once "
            "their window closed.",
            "stage",
            "side",
        )
        self._buffered = gauge(
            "join_buffered_records",
            "Records a stream join holds (both sides) in a partition's buffers.",
            "stage",
            "partition",
        )

    def matched(self, stage: str, n: int) -> None:
        self._matches.child(stage).inc(n)

    def unmatched(self, stage: str, side: str, n: int) -> None:
        self._unmatched.child(stage, side).inc(n)

    def set_buffered(self, stage: str, partition: int, n: int) -> None:
        self._buffered.child(stage, partition).set(n)

    def remove_partition(self, stage: str, partition: int) -> None:
        self._buffered.remove(stage, partition)
