"""Running a topology: the processing loop and the objects it wires.

- `processor`: the loop alone (poll, hand records on, commit when due) and `RunOptions`;
- `batch`: one batch through the stages and tasks, with no client (the loop's and the
  test driver's, `streamline.testing`);
- `task_manager`: rebalances; opening, restoring and closing tasks; rebuild after a rewind;
- `parked`: tasks kept open across an eager rebalance for the partitions that come back;
- `standby`: standby replicas, copies of other instances' window state tailed from the
  changelog in a thread, so a takeover restores only the remainder;
- `task`: one partition of the stateful input, its operator chain and stores;
- `operators`: the stateful-operator interface; `windowed` is window state, one implementation;
- `collector`: every write, through one producer; `commit`: the commit cycle, and
  `transaction`: what the open transaction holds;
- `calls`: a map whose calls run concurrently (async or threads), per-key ordered;
  `call_window`: its calls kept in flight across batches, commits up to the oldest held;
- `failures`: retry, dead-letter and late records; `retry_gate`: holding retry partitions;
- `repartition`: keyed records and watermark markers upstream of a repartition;
  `repartition_codec`: the format of its keyed records (pure);
- `route`: the route stage and the named sinks it writes to; `sinks/`: sinks that are
  not topics (`files`: the exactly-once file sink's two phases, `webhook`: POSTed batches);
- `table_manager`: loading and following tables (`tables:`); `table_operator`: one table
  partition in RocksDB, plain or versioned (pure); `tables`: a topology's table settings;
  `join_operator`: the stream-table join stage; `stream_join_stage`: the stream-stream
  join of one partition (both sides' watermarks), over `stream_join`'s buffers (pure),
  indexed in memory by `join_index` (pure);
- `health`: liveness, readiness, heartbeats and lag; `offsets`: assignment and offsets;
- pure logic: `pipeline`/`stages` (stateless stages), `sink_encode` (the sink's bytes), `record`, `windows`, `watermark`,
  `aggregates`, `window_operator`/`window_state` (windowed aggregation over a store);
- `runner`: `streamline run`; `internal_topics`: the missing internal topics it creates;
  `bounded`: when `run --until-caught-up` is done.
"""
