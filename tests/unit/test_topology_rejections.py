"""Each broken file in tests/fixtures/topologies/broken is rejected, naming the path inside it."""

import shutil
from pathlib import Path

import pytest

from streamline.serde.schema_store import SchemaStore
from streamline.topology import TopologyError, check_topology, load_topology

PROJECT = Path(__file__).resolve().parents[2]
FIXTURES = PROJECT / "tests" / "fixtures" / "topologies"
BROKEN = FIXTURES / "broken"

EXPECTED = {
    "unknown-key": "sources[0].partitoned_by: unknown key (did you mean 'partitioned_by'?)",
    "missing-schema": "sink.schema: unknown schema com.example.CustomerRevenu; known: ",
    "bad-cel-syntax": 'stages[1].filter: invalid CEL "status == \'PAID" at column 11: Syntax error',
    "cel-missing-field": "stages[1].filter: unknown field 'stauts' (did you mean 'status'?); "
    "fields of com.example.Order: order_id, customer_id, amount,",
    "missing-event-time": "sources[0].event_time: unknown field 'created' (event time)",
    "wrong-field-type": "stages[3].window.aggregate.revenue: sum(currency) needs a number, "
    "but 'currency' is string",
    "bad-duration": "stages[3].window.tumbling: invalid duration '1 minute'",
    "unimportable-map": "stages[2].map: cannot import 'examples.nowhere:to_eur': "
    "no module named 'examples.nowhere'",
    "duplicate-source": "sources[1].name: duplicate source name 'orders' (also sources[0])",
    "bad-name": "name: 'Revenue_Per_Minute' is not a valid name",
    "two-keys-in-one-stage": "stages[1]: a stage has exactly one key, got 2 (filter, key_by)",
    "window-without-kind": "stages[3].window: a window needs exactly one of tumbling, hopping, "
    "session; got none",
    "sink-missing-window-start": "sink.schema: com.example.fixtures.RevenueWithoutStart has no "
    "field 'window_start' for the window start (long timestamp-millis)",
    "yaml-syntax-error": "YAML syntax error: expected ',' or '}', but got '-'",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SchemaStore:
    """The project's schemas plus the fixtures' own."""
    folder = tmp_path_factory.mktemp("schemas")
    for avsc in [*(PROJECT / "schemas").glob("*.avsc"), *(FIXTURES / "schemas").glob("*.avsc")]:
        shutil.copy(avsc, folder)
    return SchemaStore(folder)


def test_every_broken_file_has_an_expectation() -> None:
    assert sorted(p.stem for p in BROKEN.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_file_is_rejected_with_its_path(name: str, store: SchemaStore) -> None:
    path = BROKEN / f"{name}.yaml"
    with pytest.raises(TopologyError) as caught:
        check_topology(load_topology(path), store)
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message
    assert EXPECTED[name] in message, message
    assert len(message.splitlines()) == 1, message
