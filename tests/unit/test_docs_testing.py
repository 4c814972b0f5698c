"""docs/testing.md: its Python examples run, in order, as a user would run them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"


def test_the_examples_of_docs_testing_run(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 9
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))  # examples.orders, the paid-orders map
    namespace: dict[str, object] = {}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"docs/testing.md python block {number}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"python block {number} of docs/testing.md: {exc!r}") from exc
