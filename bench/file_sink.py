"""W1 into Parquet files: streamline's file sink against its W1 topic sink, in the same run.

The same input and W1 stages (validate, filter, map to EUR, typed with `output:`) write to a
file sink (Parquet, `roll.every` 1 s) instead of a topic. Throughput is measured as for the
other cells (input events committed after the first commit / time until every input
partition is committed, when the last files are visible); the files are then read back
with pyarrow and checked against W1's expected rows.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from bench.cluster import GroupOffsets, end_offsets
from bench.launch import ROOT, STREAMLINE_TOPOLOGY, W1_STAGES, Context
from bench.process import SystemProcess
from bench.report import Row, checksum
from bench.workload import PARTITIONS, paid_row
from streamline.kafka.connection import Connection

ROLL = "1s"
SINKS = """\
sinks:
  lake:
    schema: com.example.PaidOrder
    files: {{path: {path}, format: parquet, roll: {{every: {roll}}}}}
"""


def topology_text(ctx: Context, name: str, source: str, folder: Path) -> str:
    """W1 with a typed map and a Parquet file sink in place of the sink topic."""
    stages = W1_STAGES.replace(
        "- map: examples.orders:to_eur",
        "- map: {fn: examples.orders:to_eur, output: com.example.PaidOrder}",
    )
    text = STREAMLINE_TOPOLOGY.format(
        name=name, source=source, sink="unused", sink_schema="com.example.PaidOrder",
        stages=stages.rstrip("\n"), commit_interval_ms=ctx.commit_interval_ms, tables="",
    )  # fmt: skip
    head, _sink = text.split("sink:\n", 1)
    tail = _sink.split("guarantee:", 1)[1]
    return head + SINKS.format(path=folder, roll=ROLL) + "guarantee:" + tail


def run_file_sink(
    connection: Connection,
    ctx: Context,
    source: str,
    events: int,
    expected: tuple[list[Row], str, int],
    log_dir: Path,
    stall_s: float,
) -> dict[str, Any]:
    """Runs W1 into Parquet files; its events/s, CPU, output check and file count."""
    name = f"{ctx.prefix}-tp-streamline-w1-files"
    folder = ctx.workdir / "lake"
    topology = ctx.workdir / "topologies" / f"{name}.yaml"
    topology.parent.mkdir(parents=True, exist_ok=True)
    topology.write_text(topology_text(ctx, name, source, folder))
    command = [
        sys.executable, "-m", "streamline", "run", str(topology), "--instance-id", "bench",
        "--state-dir", str(ctx.workdir / "state" / name), "--metrics-port", "0",
    ]  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "streamline", "topics", "create", str(topology),
         "--partitions", str(PARTITIONS)],
        cwd=ROOT, env=ctx.env(), capture_output=True, check=True,
    )  # fmt: skip
    ends = end_offsets(connection, source)
    offsets = GroupOffsets(connection, name, source, PARTITIONS)
    proc = SystemProcess(command, ctx.env(), ROOT, log_dir / f"{name}.log").start()
    result: dict[str, Any] = {"roll": ROLL, "format": "parquet"}
    start = None
    first = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.alive():
        first = sum(offsets.committed().values())
        if first > 0:
            start, cpu_start = time.time(), proc.cpu_seconds()
            break
        time.sleep(0.05)
    if start is None:
        proc.stop(30)
        return {**result, "status": "failed", "note": "no input committed within 180 s"}
    done_at = None
    last_total, last_change = -1, time.monotonic()
    while proc.alive():
        committed = offsets.committed()
        if all(committed.get(p, 0) >= end for p, end in ends.items()):
            done_at, cpu_end = time.time(), proc.cpu_seconds()
            break
        total = sum(committed.values())
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            break
        time.sleep(0.05)
    exit_code = proc.stop(60)
    if done_at is None:
        return {**result, "status": "failed", "note": f"stalled at {last_total:,} records"}
    measured = max(events - first, 1)
    table = ds.dataset(folder, format="parquet").to_table().to_pylist()
    rows = [paid_row({**r, "created_at": int(r["created_at"].timestamp() * 1000)}) for r in table]
    _rows, want_checksum, want_records = expected
    ok = len(rows) == want_records and checksum(rows) == want_checksum
    files = sum(1 for _ in folder.rglob("part-*.parquet"))
    shutil.rmtree(folder, ignore_errors=True)
    return {
        **result,
        "status": "ok" if ok else "mismatch",
        "events_per_s": measured / max(done_at - start, 1e-9),
        "cpu_s_per_m": (cpu_end - cpu_start) / measured * 1e6,
        "peak_rss_mb": proc.peak_rss / 1e6,
        "output_records": len(rows),
        "files": files,
        "exit_code": exit_code,
    }
