"""Loading topology files: the examples load, and malformed files get one clear line per problem."""

from pathlib import Path

import pytest

from streamline.errors import UsageError
from streamline.topology import TopologyError, load_topology

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((PROJECT / "topologies").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topologies" / "t.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def rejection(path: Path) -> str:
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    return str(caught.value)


def test_there_are_six_example_topologies() -> None:
    assert [p.stem for p in EXAMPLES] == [
        "click-sessions",
        "orders-enriched",
        "orders-payments",
        "paid-orders",
        "revenue-per-minute",
        "sensor-averages",
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_load_with_their_file_and_project_folder(path: Path) -> None:
    topology = load_topology(path)
    assert topology.name == path.stem
    assert topology.path == path
    assert topology.base_dir == PROJECT


def test_the_project_schemas_folder_is_found_beside_the_topologies() -> None:
    assert load_topology(EXAMPLES[0]).schemas_dir == PROJECT / "schemas"


def test_yaml_merge_keys_fill_in_and_explicit_keys_win(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """apiVersion: streamline/v1
name: demo
version: "1"
sources:
  - name: orders
    topic: orders
    schema: com.example.Order
    event_time: created_at
    watermark:
      <<: {max_out_of_orderness: 5s, idle_timeout: 1s}
      idle_timeout: 10s
sink: {topic: out, schema: com.example.Order}
""",
    )
    watermark = load_topology(path).sources[0].watermark
    assert (watermark.max_out_of_orderness, watermark.idle_timeout) == (5_000, 10_000)


def test_topology_errors_are_usage_errors_with_exit_status_2() -> None:
    assert issubclass(TopologyError, UsageError)
    assert TopologyError("f", []).exit_code == 2


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    assert rejection(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such file"


def test_an_empty_file_says_what_a_topology_is(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    assert rejection(path) == (
        f"{path}: the file is empty; expected a topology "
        "(a mapping starting with apiVersion: streamline/v1)"
    )


def test_a_file_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "- name: x\n")
    assert "expected a mapping of topology keys (apiVersion, name, ...), got a list" in rejection(
        path
    )


def test_api_version_must_be_streamline_v1(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: streamline/v2\nname: x\n")
    assert rejection(path) == f"{path}:1: apiVersion: expected streamline/v1, got 'streamline/v2'"


def test_a_missing_api_version_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\n")
    assert "apiVersion: required, but missing; expected streamline/v1" in rejection(path)


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: streamline/v1\nname: [x\nversion: '1'\n")
    message = rejection(path)
    assert message.startswith(f"{path}:3:")
    assert "YAML syntax error" in message
    assert "line 2" in message  # where the unclosed list started


def test_a_key_given_twice_is_rejected_not_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: streamline/v1\nname: a\nname: b\n")
    assert rejection(path) == f"{path}:3: key 'name' is given twice in one mapping"


def test_every_problem_is_one_line_with_file_line_and_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """apiVersion: streamline/v1
name: demo
version: "1"
sources:
  - name: orders
    topic: orders
    schema: com.example.Order
    event_time: created_at
    watermark: {max_out_of_orderness: 5}
sink: {topic: out, schema: com.example.Order, key: id}
comit_interval: 100ms
""",
    )
    lines = rejection(path).splitlines()
    assert lines == [
        f"{path}:9: sources[0].watermark.max_out_of_orderness: expected a duration with a unit "
        "(ms, s, m, h or d, e.g. 100ms, 5s, 1m, 2h, 1d), got 5 (a number without a unit)",
        f"{path}:10: sink.key: unknown key; expected one of: topic, schema, checksum, "
        "format, subject_strategy, auto_register",
        f"{path}:11: comit_interval: unknown key (did you mean 'commit_interval'?); expected one "
        "of: apiVersion, name, version, sources, stages, sink, sinks, guarantee, commit_interval, "
        "retry, dead_letter_topic, late_topic, freshness, lineage, quality, tables, standby_replicas",
    ]


def test_a_missing_key_points_at_its_parent(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'apiVersion: streamline/v1\nname: demo\nversion: "1"\nsources: []\nsink:\n  topic: out\n',
    )
    message = rejection(path)
    assert f"{path}:4: sources: must not be empty" in message
    assert f"{path}:5: sink.schema: required, but missing" in message


def test_messages_carry_no_pydantic_boilerplate(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apiVersion: streamline/v1\nname: demo\nversion: 1\nsources: {}\nstages: [7]\nlineage: 2\n",
    )
    message = rejection(path)
    for noise in ("pydantic", "http", "type=", "input_value", "validation error", "Value error"):
        assert noise not in message
