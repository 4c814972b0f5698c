"""Data quality without Kafka: rule severities, quality metrics, checksums (docs: "Data quality")."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pytest

from streamline import headers as h
from streamline.observability.metrics import Metrics, SlidingRatio
from streamline.reliability.checksum import value_checksum
from streamline.reliability.dead_letter import INTEGRITY, VALIDATION, Failure
from streamline.runtime.collector import RecordCollector
from streamline.runtime.pipeline import Pipeline
from streamline.runtime.record import Record
from streamline.runtime.stages import TrackNulls, Validate, VerifyChecksum
from streamline.serde import AvroCodec
from streamline.serde.schema_store import SchemaStore
from streamline.topology import TopologyError, check_topology, load_topology
from streamline.topology.model import ValidateStage
from tests.unit.test_runtime_collector import FakeProducer

PROJECT = Path(__file__).resolve().parents[2]

TOPOLOGY = """\
apiVersion: streamline/v1
name: q
version: "1"
sources:
  - name: orders
    topic: orders
    schema: com.example.Order
    event_time: created_at
    watermark: {{max_out_of_orderness: 5s}}
    {verify}
stages:
  - validate:
      rules:
        - name: amount_positive
          expr: "amount > 0.0"
        - name: known_country
          expr: "country in ['DE', 'FR']"
          severity: warn
        - name: small
          expr: "amount < 100.0"
          severity: warn
sink:
  topic: q-out
  schema: com.example.Order
  {sink_checksum}
{quality}
"""


class Expr:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def evaluate(self, record: dict[str, Any]) -> Any:
        return self.fn(record)


def record(offset: int, value: dict[str, Any] | None = None, **kw: Any) -> Record:
    r = Record("orders", 0, offset, b"k", kw.get("raw", b"v"), kw.get("headers"))
    r.value = value or {}
    return r


def write(tmp_path: Path, verify: str = "", sink_checksum: str = "", quality: str = "") -> Path:
    folder = tmp_path / "topologies"
    folder.mkdir(exist_ok=True)
    path = folder / "q.yaml"
    path.write_text(TOPOLOGY.format(verify=verify, sink_checksum=sink_checksum, quality=quality))
    return path


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(PROJECT / "schemas")


# --- the topology model ----------------------------------------------------------------


def test_severity_defaults_to_error_and_new_options_keep_old_fingerprints(
    tmp_path: Path,
) -> None:
    topology = load_topology(PROJECT / "topologies" / "paid-orders.yaml")
    validate = topology.stages[0]
    assert isinstance(validate, ValidateStage)
    assert {r.severity for r in validate.validation.rules} == {"error"}
    dumped = topology.canonical_json()
    for key in ("severity", "verify_checksum", "checksum", "quality"):
        assert f'"{key}"' not in dumped  # unused options don't change the fingerprint
    used = load_topology(write(tmp_path, quality="quality: {track_nulls: [country]}"))
    assert '"severity":"warn"' in used.canonical_json()
    assert '"track_nulls":["country"]' in used.canonical_json()


def test_an_unknown_severity_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace("severity: warn", "severity: info", 1))
    with pytest.raises(TopologyError, match="severity"):
        load_topology(path)


def test_track_nulls_names_fields_of_the_source_schema(tmp_path: Path, store: SchemaStore) -> None:
    path = write(tmp_path, quality="quality: {track_nulls: [country, colour]}")
    with pytest.raises(TopologyError, match=r"quality.track_nulls\[1\].*unknown field 'colour'"):
        check_topology(load_topology(path), store)


def test_the_pipeline_splits_rules_by_severity(tmp_path: Path, store: SchemaStore) -> None:
    path = write(tmp_path, quality="quality: {track_nulls: [country]}")
    pipeline = Pipeline.from_checked(check_topology(load_topology(path), store), store)
    validate = next(s for s in pipeline.stages if isinstance(s, Validate))
    assert [n for n, _ in validate.rules] == ["amount_positive"]
    assert [n for n, _ in validate.warn_rules] == ["known_country", "small"]
    assert pipeline.warns and not pipeline.sink_checksum
    assert [type(s).__name__ for s in pipeline.stages][:3] == ["Decode", "TrackNulls", "EventTime"]
    assert not any(isinstance(s, VerifyChecksum) for s in pipeline.stages)


def test_checksum_options_add_the_verify_stage_and_stamp_outputs(
    tmp_path: Path, store: SchemaStore
) -> None:
    path = write(tmp_path, verify="verify_checksum: true", sink_checksum="checksum: true")
    pipeline = Pipeline.from_checked(check_topology(load_topology(path), store), store)
    first = pipeline.stages[0]
    assert isinstance(first, VerifyChecksum) and first.topics == {"orders"}
    assert pipeline.sink_checksum


# --- the validate stage ----------------------------------------------------------------


def validate(dead_letter: bool = True) -> Validate:
    return Validate(
        "stages[0].validate",
        [("positive", Expr(lambda v: v["amount"] > 0))],
        dead_letter,
        [
            ("known_country", Expr(lambda v: v["country"] in ("DE", "FR"))),
            ("has_email", Expr(lambda v: v["email"] is not None)),  # KeyError counts as broken
        ],
    )


def test_warn_rules_keep_the_record_and_name_every_broken_rule() -> None:
    stage = validate()
    batch = [
        record(0, {"amount": 5, "country": "DE", "email": "a@b"}),
        record(1, {"amount": 5, "country": "US", "email": "a@b"}),
        record(2, {"amount": 5, "country": "US"}),
        record(3, {"amount": -1, "country": "US"}),  # the error rule wins: no warn rule runs
    ]
    failed: list[tuple[Record, Failure]] = []
    out = stage.process(batch, lambda r, f: failed.append((r, f)), lambda *a: None)
    assert [r.offset for r in out] == [0, 1, 2]
    assert getattr(out[0], "warnings", None) is None
    assert out[1].warnings == ["known_country"]
    assert out[2].warnings == ["known_country", "has_email"]
    assert [(r.offset, f.error_type, f.rule) for r, f in failed] == [(3, VALIDATION, "positive")]
    assert stage.failures == {
        ("positive", "error"): 1,
        ("known_country", "warn"): 2,
        ("has_email", "warn"): 1,
    }
    assert (stage.seen, stage.passed) == (4, 1)


def test_a_drop_stage_counts_error_failures_too() -> None:
    stage = validate(dead_letter=False)
    drops: list[tuple[str, str, int]] = []
    out = stage.process([record(0, {"amount": -1})], lambda r, f: None, lambda *a: drops.append(a))
    assert out == [] and drops == [("stages[0].validate", "validation", 1)]
    assert stage.failures == {("positive", "error"): 1}


def test_reported_counts_become_metrics_and_reset() -> None:
    stage, metrics = validate(), Metrics("t")
    batch = [
        record(i, {"amount": 5, "country": "DE" if i % 4 else "US", "email": "x"}) for i in range(8)
    ]
    stage.process(batch, lambda r, f: None, lambda *a: None)
    stage.report(metrics)
    stage.report(metrics)  # nothing new
    labels = {"stage": "stages[0].validate", "rule": "known_country", "severity": "warn"}
    assert metrics.value("validation_failures_total", **labels) == 2
    assert metrics.value("quality_ratio", stage="stages[0].validate") == 6 / 8
    assert (stage.seen, stage.failures) == (0, {})


def test_track_nulls_counts_nulls_and_missing_fields() -> None:
    stage, metrics = TrackNulls("quality.track_nulls", ["email", "country"]), Metrics("t")
    batch = [
        record(0, {"email": None, "country": "DE"}),
        record(1, {"country": "DE"}),
        record(2, {"email": "x", "country": "FR"}),
    ]
    assert stage.process(batch, lambda r, f: None, lambda *a: None) == batch
    stage.report(metrics)
    assert metrics.value("field_null_ratio", field="email") == pytest.approx(2 / 3)
    assert metrics.value("field_null_ratio", field="country") == 0


def test_the_sliding_ratio_forgets_slices_older_than_its_window() -> None:
    now = [1000.0]
    ratio = SlidingRatio(window_s=60, clock=lambda: now[0])
    assert math.isnan(ratio.value())
    ratio.add(1, 4)
    now[0] += 30
    ratio.add(3, 4)
    assert ratio.value() == 0.5
    now[0] += 35  # the first slice is now more than 60s old
    assert ratio.value() == 0.75
    now[0] += 60
    assert math.isnan(ratio.value())


# --- checksums --------------------------------------------------------------------------


def test_the_checksum_is_the_sha256_hex_of_the_value() -> None:
    assert value_checksum(b"abc") == hashlib.sha256(b"abc").hexdigest().encode()


def test_verify_checksum_dead_letters_a_mismatch_or_a_missing_header_as_integrity() -> None:
    stage = VerifyChecksum("checksum", frozenset({"orders"}))
    good = record(0, raw=b"abc", headers=[(h.CHECKSUM, value_checksum(b"abc"))])
    bad = record(1, raw=b"abd", headers=[(h.CHECKSUM, value_checksum(b"abc"))])
    missing = record(2, raw=b"abc")
    other = Record("elsewhere", 0, 3, None, b"x", None)  # a topic that is not verified
    failed: list[tuple[Record, Failure]] = []
    out = stage.process(
        [good, bad, missing, other], lambda r, f: failed.append((r, f)), lambda *a: None
    )
    assert out == [good, other]
    assert [(r.offset, f.error_type) for r, f in failed] == [(1, INTEGRITY), (2, INTEGRITY)]
    assert "sha256" in failed[0][1].message and "no streamline.checksum" in failed[1][1].message


def collector(**kw: Any) -> RecordCollector[FakeProducer]:
    return RecordCollector(lambda cb: FakeProducer(cb), lambda err, topic: None, **kw)


def test_outputs_carry_warnings_and_checksums_only_when_configured() -> None:
    warned, plain = record(0), record(1)
    warned.warnings = ["known_country", "small"]
    outputs = [(warned, b"one"), (plain, b"two")]
    for kw, expect in [
        ({}, [set(), set()]),
        ({"warnings": True}, [{h.QUALITY_WARNINGS}, set()]),
        ({"sink_checksum": True}, [{h.CHECKSUM}, {h.CHECKSUM}]),
    ]:
        c = collector(**kw)
        c.send_outputs(outputs, "out", b"t@1#x", [])
        names = [
            {k for k, _ in p["headers"]} - {h.TOPOLOGY, h.SOURCE, h.EVENT_TIME}
            for p in c.producer.produced
        ]
        assert names == expect, kw
    c = collector(warnings=True, sink_checksum=True)
    c.send_outputs(outputs, "out", b"t@1#x", [])
    first = dict(c.producer.produced[0]["headers"])
    assert first[h.QUALITY_WARNINGS] == b"known_country,small"
    assert first[h.CHECKSUM] == value_checksum(b"one")


def test_a_pipeline_reports_quality_once_per_batch(tmp_path: Path, store: SchemaStore) -> None:
    path = write(tmp_path, quality="quality: {track_nulls: [country]}")
    pipeline = Pipeline.from_checked(check_topology(load_topology(path), store), store)
    codec = AvroCodec(store, store.get("com.example.Order"))
    values = [
        {"order_id": f"o{i}", "customer_id": "c", "amount": amount, "currency": "EUR",
         "status": "PAID", "country": country, "created_at": 1767225600000}
        for i, (amount, country) in enumerate([(5.0, "DE"), (500.0, "US"), (-1.0, "DE"), (5.0, "NL")])
    ]  # fmt: skip
    batch = [record(i, raw=codec.encode(v)) for i, v in enumerate(values)]
    metrics, failures, drops = Metrics("q"), [], {}  # type: ignore[var-annotated]
    out = pipeline.process(batch, failures, metrics, drops)
    assert [r.offset for r, _ in out] == [0, 1, 3]
    assert [getattr(r, "warnings", None) for r, _ in out] == [
        None,
        ["known_country", "small"],
        ["known_country"],
    ]
    stage = "stages[0].validate"
    counts = {
        rule: metrics.value("validation_failures_total", stage=stage, rule=rule, severity=sev)
        for rule, sev in [
            ("amount_positive", "error"),
            ("known_country", "warn"),
            ("small", "warn"),
        ]
    }
    assert counts == {"amount_positive": 1, "known_country": 2, "small": 1}
    assert metrics.value("quality_ratio", stage=stage) == 1 / 4
    assert metrics.value("field_null_ratio", field="country") == 0


# --- lineage counts and reconcile's pure parts ------------------------------------------


def test_lineage_events_carry_the_transactions_counts() -> None:
    import json

    from streamline.observability.lineage import run_event
    from streamline.runtime.commit import lineage_counts
    from streamline.runtime.transaction import Transaction

    txn = Transaction(records=10, outputs=6)
    txn.drops = {"filter": 2, "validation": 1}
    txn.dead_letters = {("map", "stages[2].map"): 1, ("decode", "decode"): 0}
    event = json.loads(
        run_event(
            "t", "1", "f" * 64, "t-a", "k:9092", {("in", 0): (0, 9)}, {}, counts=lineage_counts(txn)
        )
    )
    counts = event["run"]["facets"]["streamline_counts"]
    assert {k: counts[k] for k in ("records", "outputs", "late", "retries", "drops", "dead_letters")} == {
        "records": 10, "outputs": 6, "late": 0, "retries": 0,
        "drops": {"filter": 2, "validation": 1}, "dead_letters": {"map": 1, "decode": 0},
    }  # fmt: skip
    assert event["run"]["facets"]["streamline_transaction"]["transactional_id"] == "t-a"


def test_reconcile_times_are_durations_back_or_iso_times() -> None:
    from streamline.errors import UsageError
    from streamline.ops.reconcile import parse_time

    assert parse_time("1h", 10_000_000) == 10_000_000 - 3_600_000
    assert parse_time("2026-01-01T00:00:00Z", 0) == 1767225600000
    assert parse_time("2026-01-01T00:00:00", 0) == 1767225600000  # UTC when no zone
    with pytest.raises(UsageError, match="duration back from now"):
        parse_time("yesterday", 0)


def test_reconcile_refuses_windowed_topologies_it_does_not_support_yet_before_connecting() -> None:
    from streamline.errors import UsageError
    from streamline.ops.reconcile import reconcile

    sessions = load_topology(PROJECT / "topologies" / "click-sessions.yaml")
    with pytest.raises(UsageError, match=r"not supported yet: windowed topologies with session"):
        reconcile(None, sessions, 0, 1)  # type: ignore[arg-type]
    repartitioned = load_topology(PROJECT / "topologies" / "revenue-per-minute.yaml")
    with pytest.raises(UsageError, match=r"not supported yet: .*with repartitioning"):
        reconcile(None, repartitioned, 0, 1)  # type: ignore[arg-type]


# --- the same through the test driver (the runtime's stages and collector, in memory) --


def test_the_test_driver_shows_warnings_checksums_and_integrity_dead_letters(
    tmp_path: Path,
) -> None:
    from streamline.testing import TopologyDriver

    path = write(tmp_path, verify="verify_checksum: true", sink_checksum="checksum: true")
    codec = AvroCodec(
        SchemaStore(PROJECT / "schemas"), SchemaStore(PROJECT / "schemas").get("com.example.Order")
    )
    values = [
        {"order_id": f"o{i}", "customer_id": "c", "amount": amount, "currency": "EUR",
         "status": "PAID", "country": country, "created_at": 1767225600000 + i}
        for i, (amount, country) in enumerate([(5.0, "DE"), (500.0, "US"), (-1.0, "DE")])
    ]  # fmt: skip
    with TopologyDriver(path, PROJECT / "schemas") as driver:
        for value in values:
            raw = codec.encode(value)
            driver.pipe("orders", raw, headers=[(h.CHECKSUM, value_checksum(raw))])
        tampered = codec.encode(values[0])
        driver.pipe(
            "orders", tampered[:-1] + b"\x00", headers=[(h.CHECKSUM, value_checksum(tampered))]
        )
        driver.commit()
        outputs = driver.output()
        dead = driver.dead_letters()
    assert [r.value["order_id"] for r in outputs] == ["o0", "o1"]  # type: ignore[index]
    assert [r.header(h.QUALITY_WARNINGS) for r in outputs] == [None, b"known_country,small"]
    assert all(r.header(h.CHECKSUM) == value_checksum(r.raw) for r in outputs)
    assert [r.header(h.ERROR_TYPE) for r in dead] == [b"validation", b"integrity"]
