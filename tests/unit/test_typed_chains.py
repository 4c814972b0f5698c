"""Typed chains: a map's `output:` schema checks the stages after it and the sink before
anything runs, and its results at run time (`schema` dead letters naming the field)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from streamline.cli import app
from streamline.headers import ERROR_FIELD, ERROR_STAGE, ERROR_TYPE
from streamline.serde import AvroCodec, SchemaStore
from streamline.serde.fit import RecordFit
from streamline.testing import TopologyDriver
from streamline.topology import TopologyError, check_topology, load_topology

PROJECT = Path(__file__).resolve().parents[2]
runner = CliRunner()

EXTRACTED = {
    "type": "record",
    "name": "Extracted",
    "namespace": "test.typed",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "customer_id", "type": "string"},
        {"name": "amount_eur", "type": "double"},
        {"name": "country", "type": "string"},
        {"name": "band", "type": "string", "default": "small"},
        {"name": "created_at", "type": "long"},
        {
            "name": "lines",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Line",
                    "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}],
                },
            },
            "default": [],
        },
    ],
}

MAPS = """
def extract(order):
    out = {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount_eur": order["amount"],
        "country": order["country"],
        "created_at": order["created_at"],
        "ignored": "not in the schema",
    }
    if order["status"] == "BAD_TYPE":
        out["amount_eur"] = "12.5"
    if order["status"] == "BAD_LINE":
        out["lines"] = [{"sku": "a", "qty": 1}, {"sku": "b", "qty": "two"}]
    return out
"""

TOPOLOGY = """
apiVersion: streamline/v1
name: typed
version: "1"
sources:
  - {{name: orders, topic: orders, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 1s}}}}
stages:
  - map: {{fn: typed_chain_maps:extract, output: test.typed.Extracted}}
  - filter: "{filter}"
sink: {{topic: out, schema: com.example.PaidOrder}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "schemas").mkdir()
    for avsc in (PROJECT / "schemas").glob("*.avsc"):
        shutil.copy(avsc, tmp_path / "schemas")
    (tmp_path / "schemas" / "extracted.avsc").write_text(json.dumps(EXTRACTED))
    (tmp_path / "typed_chain_maps.py").write_text(MAPS)
    (tmp_path / "topologies").mkdir()
    return tmp_path


def write(project: Path, filter_expr: str, name: str = "typed.yaml", **replace: str) -> Path:
    text = TOPOLOGY.format(filter=filter_expr)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = project / "topologies" / name
    path.write_text(textwrap.dedent(text))
    return path


def validate(project: Path, path: Path) -> Any:
    return runner.invoke(app, ["validate", str(path), "--schemas", str(project / "schemas")])


def test_a_stage_after_a_typed_map_is_checked_against_its_output(project: Path) -> None:
    wrong = validate(project, write(project, "amount > 10.0"))
    assert wrong.exit_code == 2
    assert "stages[1].filter" in wrong.stderr
    assert "amount" in wrong.stderr and "test.typed.Extracted" in wrong.stderr

    fixed = validate(project, write(project, "amount_eur > 10.0"))
    assert fixed.exit_code == 0, fixed.stderr
    assert "-> test.typed.Extracted {order_id: string" in fixed.stdout
    assert "warning" not in fixed.stderr


def test_the_sink_is_checked_against_the_last_typed_map(project: Path) -> None:
    path = write(
        project,
        "amount_eur > 10.0",
        **{"schema: com.example.PaidOrder": "schema: com.example.CustomerRevenue"},
    )
    result = validate(project, path)
    assert result.exit_code == 2
    assert "sink.schema" in result.stderr and "test.typed.Extracted" in result.stderr


def test_an_unknown_output_schema_is_named_at_its_stage(project: Path) -> None:
    path = write(
        project, "amount_eur > 10.0", **{"output: test.typed.Extracted": "output: test.Nope"}
    )
    result = validate(project, path)
    assert result.exit_code == 2
    assert "stages[0].map.output" in result.stderr and "test.Nope" in result.stderr


def test_an_untyped_map_is_accepted_with_a_warning(project: Path) -> None:
    path = write(
        project,
        "amount_eur > 10.0",
        **{
            "{fn: typed_chain_maps:extract, output: test.typed.Extracted}": (
                "typed_chain_maps:extract"
            ),
            "amount_eur > 10.0": "amount > 10.0",
        },
    )
    result = validate(project, path)
    assert result.exit_code == 0, result.stderr
    assert "warning:" in result.stderr and "stages[0].map: no output: schema" in result.stderr


def test_a_window_after_a_typed_map_aggregates_its_fields(project: Path) -> None:
    path = write(project, "amount_eur > 10.0")
    text = path.read_text().replace(
        '  - filter: "amount_eur > 10.0"\n',
        "  - key_by: customer_id\n"
        "  - window: {tumbling: 1m, aggregate: {order_count: count(), revenue: sum(amount),\n"
        "      max_amount: max(amount_eur), min_amount: min(amount_eur),\n"
        "      avg_amount: avg(amount_eur), first_order: first(order_id),\n"
        "      last_order: last(order_id)}}\n",
    )
    path.write_text(text.replace("com.example.PaidOrder", "com.example.CustomerRevenue"))
    with pytest.raises(TopologyError) as caught:
        check_topology(load_topology(path), SchemaStore(project / "schemas"))
    assert "stages[2].window.aggregate.revenue: unknown field 'amount'" in str(caught.value)
    path.write_text(path.read_text().replace("sum(amount)", "sum(amount_eur)"))
    check_topology(load_topology(path), SchemaStore(project / "schemas"))


def order(i: int, status: str = "PAID", amount: float = 20.0) -> dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "customer_id": f"c-{i % 3}",
        "amount": amount,
        "currency": "EUR",
        "status": status,
        "country": "DE",
        "created_at": 1_700_000_000_000 + i,
    }


def test_a_result_that_misfits_its_output_is_a_schema_dead_letter(project: Path) -> None:
    path = write(project, "amount_eur > 10.0")
    store = SchemaStore(project / "schemas")
    orders = [order(i, status) for i, status in enumerate(["PAID", "BAD_TYPE", "PAID", "BAD_LINE"])]
    orders.append(order(4, amount=5.0))  # fits, filtered out
    with TopologyDriver(path, store) as driver:
        driver.pipe("orders", orders)
        out = [r.value for r in driver.output()]
        dead = driver.dead_letters()
    assert out == [
        {
            "order_id": f"o-{i}",
            "customer_id": f"c-{i}",
            "amount_eur": 20.0,
            "country": "DE",
            "created_at": 1_700_000_000_000 + i,
        }
        for i in (0, 2)
    ]
    assert [(d.header(ERROR_TYPE), d.header(ERROR_STAGE), d.header(ERROR_FIELD)) for d in dead] == [
        (b"schema", b"stages[0].map", b"amount_eur"),
        (b"schema", b"stages[0].map", b"lines[1].qty"),
    ]
    codec = AvroCodec(store, store.get("com.example.Order"))
    assert [codec.decode(d.raw) for d in dead] == [orders[1], orders[3]]  # the input bytes


def test_record_fit_names_the_path_and_shapes_to_the_schema(project: Path) -> None:
    fit = RecordFit(SchemaStore(project / "schemas").get("test.typed.Extracted"))
    good = {k: v for k, v in order(1).items() if k not in ("amount", "currency", "status")}
    good["amount_eur"] = 3
    assert fit.misfit(good) is None
    assert fit.shape({**good, "extra": 1}) == {**good, "band": "small", "lines": []}
    assert fit.misfit({**good, "lines": [{"sku": "a"}]}) == (
        "lines[0].qty",
        "missing (int, no default)",
    )
    assert fit.misfit({**good, "country": None}) == ("country", "None is not a valid string")
    assert fit.misfit([1]) == ("", "[1] is not a test.typed.Extracted record")


def test_flat_schemas_take_the_quick_check_and_still_name_the_field() -> None:
    fit = RecordFit(SchemaStore(PROJECT / "schemas").get("com.example.PaidOrder"))
    good = {"order_id": "o", "customer_id": "c", "amount_eur": 2, "country": "DE", "created_at": 1}
    assert fit.misfit(good) is None
    assert fit.misfit({**good, "created_at": True}) == ("created_at", "True is not a valid long")
    assert fit.misfit({**good, "created_at": 2**63}) is not None
    assert fit.misfit({**good, "amount_eur": None}) == ("amount_eur", "None is not a valid double")
    assert fit.misfit({k: v for k, v in good.items() if k != "country"}) == (
        "country",
        "missing (string, no default)",
    )


def test_a_typed_map_run_in_threads_is_checked_too(project: Path) -> None:
    path = write(
        project,
        "amount_eur > 10.0",
        **{"output: test.typed.Extracted}": "output: test.typed.Extracted, threads: 2}"},
    )
    orders = [order(i, status) for i, status in enumerate(["PAID", "BAD_TYPE", "PAID"])]
    with TopologyDriver(path, SchemaStore(project / "schemas")) as driver:
        driver.pipe("orders", orders)
        assert [r.value["order_id"] for r in driver.output()] == ["o-0", "o-2"]
        (dead,) = driver.dead_letters()
    assert dead.header(ERROR_FIELD) == b"amount_eur" and dead.header(ERROR_TYPE) == b"schema"
