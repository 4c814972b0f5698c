"""Reading a topology file: YAML to a validated `Topology`, or a TopologyError saying why not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from streamline.topology.errors import (
    Problem,
    TopologyError,
    join_path,
    problems_from_validation_error,
)
from streamline.topology.model import API_VERSION, Topology


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(key)
        self.key = key
        self.line = line


class _Loader(yaml.SafeLoader):
    """SafeLoader refusing a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges defaults; explicit keys may override them
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _record_lines(node: yaml.Node, path: list[str | int], lines: dict[str, int]) -> None:
    """Spec-style path -> 1-based line for every key and list item under `node`."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = [*path, str(key_node.value)]
            lines.setdefault(join_path(child), key_node.start_mark.line + 1)
            _record_lines(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = [*path, i]
            lines.setdefault(join_path(child), item.start_mark.line + 1)
            _record_lines(item, child, lines)


def _parse(path: Path, text: str) -> tuple[Any, dict[str, int]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except _DuplicateKey as exc:
        raise TopologyError(
            f"{path}:{exc.line}",
            [Problem("", f"key {exc.key!r} is given twice in one mapping")],
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = exc.problem or exc.context or "malformed YAML"
        context = exc.context_mark
        if exc.context and context is not None and mark is not None and context.line != mark.line:
            what += f" ({exc.context} at line {context.line + 1})"
        raise TopologyError(where, [Problem("", f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise TopologyError(str(path), [Problem("", f"YAML syntax error: {exc}")]) from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    _record_lines(node, [], lines)
    return data, lines


def load_topology(path: Path | str) -> Topology:
    """The validated topology in this YAML file, remembering the file and its project folder.

    `base_dir` is the parent of the file's folder (`project/topologies/x.yaml` ->
    `project`): map callables are imported from there and `schemas/` is found there.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TopologyError(str(path), [Problem("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(str(path), [Problem("", f"cannot read the file: {exc}")]) from None
    data, lines = _parse(path, text)
    if data is None:
        raise TopologyError(
            str(path),
            [
                Problem(
                    "",
                    "the file is empty; expected a topology "
                    f"(a mapping starting with apiVersion: {API_VERSION})",
                )
            ],
        )
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({data!r})"
        raise TopologyError(
            str(path),
            [
                Problem(
                    "", f"expected a mapping of topology keys (apiVersion, name, ...), got {kind}"
                )
            ],
            lines,
        )
    if data.get("apiVersion") != API_VERSION:
        message = (
            f"required, but missing; expected {API_VERSION}"
            if "apiVersion" not in data
            else f"expected {API_VERSION}, got {data['apiVersion']!r}"
        )
        raise TopologyError(str(path), [Problem("apiVersion", message)], lines)
    try:
        topology = Topology.model_validate(data)
    except ValidationError as exc:
        raise TopologyError(str(path), problems_from_validation_error(exc), lines) from None
    topology.set_origin(path, path.resolve().parent.parent, lines)
    return topology
