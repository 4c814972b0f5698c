"""The runtime stays in rooms: the loop small, no runtime module or class grown into a god object."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "streamline"
MODULES = sorted(SRC.rglob("*.py"))


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_the_loop_module_holds_only_the_loop() -> None:
    assert lines(SRC / "runtime" / "processor.py") <= 300


@pytest.mark.parametrize("path", sorted((SRC / "runtime").glob("*.py")), ids=lambda p: p.name)
def test_no_runtime_module_is_over_450_lines(path: Path) -> None:
    assert lines(path) <= 450


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_class_has_more_than_25_methods(path: Path) -> None:
    tree = ast.parse(path.read_text())
    crowded = {
        node.name: n
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and (n := sum(isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) for f in node.body))
        > 25
    }
    assert crowded == {}
