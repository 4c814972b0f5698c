"""`streamline test`: pipe input files through a topology without a broker; compare with a golden file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import err, out
from streamline.cli.options import SchemasOpt, load_checked
from streamline.errors import UsageError


def test(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    inputs: Annotated[
        list[str],
        typer.Option(
            "--input", "-i", help="SOURCE=FILE.jsonl: records piped to a source (repeatable)."
        ),
    ],
    expect: Annotated[
        Path, typer.Option("--expect", "-e", help="Golden file: the expected sink records.")
    ],
    update: Annotated[
        bool, typer.Option("--update", help="Write the output to the golden file instead.")
    ] = False,
    partitions: Annotated[
        int, typer.Option("--partitions", min=1, help="Partitions of every topic.")
    ] = 1,
    schemas: SchemasOpt = None,
) -> None:
    """Run a topology on input files in process (no broker) and compare its output with a golden file.

    Exit 1 with a diff when the output differs; order is ignored.
    """
    from streamline.testing import golden

    sources: dict[str, Path] = {}
    for given in inputs:
        source, sep, path = given.partition("=")
        if not sep or not source or not path:
            raise UsageError(f"--input {given}: expected SOURCE=FILE")
        sources[source] = Path(path)
    checked, store = load_checked(topology, schemas)
    actual = golden.output_lines(checked, store, sources, partitions)
    if update:
        golden.write_golden(expect, actual)
        out.print(f"wrote {len(actual)} records to {expect}", markup=False)
        return
    if not expect.is_file():
        raise UsageError(f"golden file {expect} does not exist (write it with --update)")
    expected = golden.read_golden(expect)
    lines = golden.diff(expected, actual, str(expect))
    if lines:
        out.print("\n".join(lines), markup=False, highlight=False)
        err.print(
            f"FAILED: the output differs from {expect} ({len(expected)} expected, "
            f"{len(actual)} written); rerun with --update if the change is intended",
            markup=False,
        )
        raise typer.Exit(1)
    out.print(f"ok: {len(actual)} records match {expect}", markup=False)
