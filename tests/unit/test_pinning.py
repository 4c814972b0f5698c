"""The run fingerprint pins the definition, the schema files, the map code and the version."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

import streamline
from streamline.serde.schema_store import SchemaStore
from streamline.topology import check_topology, load_topology
from streamline.topology.pinning import code_digest

PROJECT = Path(__file__).resolve().parents[2]
PAID_ORDERS = PROJECT / "topologies" / "paid-orders.yaml"


def fingerprint(schemas: Path = PROJECT / "schemas", topology: Path = PAID_ORDERS) -> str:
    return check_topology(load_topology(topology), SchemaStore(schemas)).fingerprint


def test_the_same_inputs_give_the_same_fingerprint() -> None:
    assert fingerprint() == fingerprint()


def test_a_schema_files_contents_change_it_even_when_the_canonical_form_does_not(
    tmp_path: Path,
) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(PROJECT / "schemas", schemas)
    before = fingerprint(schemas)
    sink = schemas / "paid_order.avsc"
    sink.write_text(sink.read_text().replace('"name"', '"doc": "pinned", "name"', 1))
    after = check_topology(load_topology(PAID_ORDERS), SchemaStore(schemas))
    assert (
        after.sink_schema.canonical_form
        == SchemaStore(PROJECT / "schemas").get("com.example.PaidOrder").canonical_form
    )
    assert after.fingerprint != before
    assert after.topology.fingerprint == load_topology(PAID_ORDERS).fingerprint


def test_a_schema_the_topology_does_not_name_does_not_change_it(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(PROJECT / "schemas", schemas)
    before = fingerprint(schemas)
    (schemas / "sensor.avsc").write_text(
        (schemas / "sensor.avsc").read_text().replace('"name"', '"doc": "x", "name"', 1)
    )
    assert fingerprint(schemas) == before


def test_the_map_modules_source_changes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "pinned_maps.py"
    module.write_text("def to_eur(order):\n    return order\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    maps = importlib.import_module("pinned_maps")
    before = code_digest(maps.to_eur)
    module.write_text("RATE = 2\n\ndef to_eur(order):\n    return order\n")
    maps = importlib.reload(maps)
    assert code_digest(maps.to_eur) != before
    sys.modules.pop("pinned_maps")


def test_the_streamline_version_changes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    before = fingerprint()
    monkeypatch.setattr(streamline, "__version__", "99.0.0")
    assert fingerprint() != before


def test_output_headers_carry_the_run_fingerprint() -> None:
    checked = check_topology(load_topology(PAID_ORDERS), SchemaStore(PROJECT / "schemas"))
    assert checked.header_value == f"paid-orders@1#{checked.fingerprint[:12]}"
