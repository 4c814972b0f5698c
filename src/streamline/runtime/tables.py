"""The tables of a checked topology, as the runtime holds them (see `table_operator.py`)."""

from __future__ import annotations

from pathlib import Path

from streamline.runtime.table_operator import TableSettings, TableState
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import CheckedTopology
from streamline.topology.model import joins_of


def table_state(checked: CheckedTopology, store: SchemaStore, state_dir: Path) -> TableState:
    """An empty `TableState` for the topology's tables, each row keeping the fields joins read."""
    topology = checked.topology
    read: dict[str, list[str]] = {t.name: [] for t in topology.tables}
    for _index, spec in joins_of(topology):
        if spec.table is not None:
            for table_field in spec.fields.values():
                if table_field not in read[spec.table]:
                    read[spec.table].append(table_field)
    settings = [
        TableSettings(
            name=table.name,
            topic=table.topic,
            codec=AvroCodec(store, checked.table_schemas[table.name]),
            key_field=table.key,
            valid_from=table.valid_from,
            history_ms=table.versioned.history if table.versioned is not None else None,
            fields=tuple(read[table.name]),
            topology=topology.name,
            state_dir=state_dir,
            global_=table.global_,
        )
        for table in topology.tables
    ]
    return TableState(settings)
