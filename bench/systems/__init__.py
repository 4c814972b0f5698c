"""The programs the benchmark runs as subprocesses, one per system.

`bare` runs in streamline's environment (it needs only confluent-kafka); the
peers run in their own virtual environments under bench/.venvs/ and import
nothing of streamline: only `wire` (fastavro) and the pure logic of
`bench.workload`, so every system applies the same validation and map.
"""
