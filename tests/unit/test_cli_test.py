"""`streamline test`: a topology on input files against a golden file, without a broker."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from streamline.cli import app
from streamline.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "topologies" / "revenue-per-minute.yaml"
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
INPUT = GOLDEN / "orders.jsonl"
EXPECTED = GOLDEN / "revenue-per-minute.expected.jsonl"
SCHEMAS = ROOT / "schemas"

runner = CliRunner()


def run(*args: str | Path) -> Result:
    return runner.invoke(app, ["test", *map(str, args), "--schemas", str(SCHEMAS)])


def test_the_golden_file_of_revenue_per_minute_passes() -> None:
    result = run(TOPOLOGY, "--input", f"orders={INPUT}", "--expect", EXPECTED)
    assert result.exit_code == 0, result.output
    assert "ok: 42 records match" in result.stdout


def test_one_changed_input_line_fails_with_a_diff_of_its_window(tmp_path: Path) -> None:
    lines = INPUT.read_text().splitlines()
    assert '"amount": 75.95' in lines[4]
    lines[4] = lines[4].replace('"amount": 75.95', '"amount": 1.5')
    changed = tmp_path / "orders.jsonl"
    changed.write_text("\n".join(lines) + "\n")
    result = run(TOPOLOGY, "--input", f"orders={changed}", "--expect", EXPECTED)
    assert result.exit_code == 1
    diff = [
        line
        for line in result.stdout.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert len(diff) == 2  # the window of c-3 holding o-0004, before and after
    assert all(
        '"customer_id":"c-3"' in line and '"window_start":1767225600000' in line for line in diff
    )
    assert '"min_amount":1.5' in next(line for line in diff if line.startswith("+"))
    assert "FAILED: the output differs" in result.stderr


def test_update_writes_the_golden_file_that_then_passes(tmp_path: Path) -> None:
    golden = tmp_path / "expected.jsonl"
    result = run(TOPOLOGY, "--input", f"orders={INPUT}", "--expect", golden, "--update")
    assert result.exit_code == 0
    assert golden.read_text() == EXPECTED.read_text()


def test_a_missing_golden_file_and_a_malformed_input_are_named(tmp_path: Path) -> None:
    result = run(TOPOLOGY, "--input", f"orders={INPUT}", "--expect", tmp_path / "none.jsonl")
    assert isinstance(result.exception, UsageError)
    assert "write it with --update" in str(result.exception)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"order_id": "o-1"}\n[1, 2]\n')
    result = run(TOPOLOGY, "--input", f"orders={bad}", "--expect", EXPECTED)
    assert str(result.exception) == f"{bad}:2: not a JSON object"
    result = run(TOPOLOGY, "--input", "orders", "--expect", EXPECTED)
    assert "expected SOURCE=FILE" in str(result.exception)
