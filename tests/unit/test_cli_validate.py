"""`streamline validate` as a user runs it: exit status 2 and one message naming the path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamline.cli import app
from tests.unit.test_topology_rejections import BROKEN, EXPECTED, FIXTURES, PROJECT

runner = CliRunner()


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("schemas")
    for avsc in [*(PROJECT / "schemas").glob("*.avsc"), *(FIXTURES / "schemas").glob("*.avsc")]:
        shutil.copy(avsc, folder)
    return folder


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_rejects_broken_file_with_exit_2(name: str, schemas: Path) -> None:
    path = BROKEN / f"{name}.yaml"
    result = runner.invoke(app, ["validate", str(path), "--schemas", str(schemas)])
    assert result.exit_code == 2
    assert f"error: {path}:" in result.stderr
    assert EXPECTED[name] in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_passes_the_examples_and_prints_chain_and_fingerprint() -> None:
    files = sorted(str(p) for p in (PROJECT / "topologies").glob("*.yaml"))
    result = runner.invoke(app, ["validate", *files, "--schemas", str(PROJECT / "schemas")])
    assert result.exit_code == 0, result.stderr
    assert "stages[2].map examples.orders:to_eur" in result.stdout
    assert "fingerprint " in result.stdout
    assert result.stdout.count("fingerprint ") == len(files)
