"""docs/topology.md documents every key the topology model accepts.

The keys are collected from the pydantic models reachable from `Topology` (through
nested models, lists, unions and dicts), by their YAML names (aliases), as full paths
such as `sources[].watermark.idle_timeout`. A model written as one string in YAML
(an aggregate, `sum(amount)`) contributes the names of its parts instead.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from streamline.topology.model import Topology

DOC = Path(__file__).resolve().parents[2] / "docs" / "topology.md"


def _written_as_string(model: type[BaseModel]) -> bool:
    """A model with its own serializer to a scalar is one string in YAML, not a mapping."""
    return bool(model.__pydantic_decorators__.model_serializers)


def _models_in(annotation: Any, path: str) -> Iterator[tuple[type[BaseModel], str]]:
    """(model, path of its mapping) for every model an annotation can hold."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        yield from _models_in(args[0], path)
    elif origin in (Union, types.UnionType):
        for arg in args:
            yield from _models_in(arg, path)
    elif origin is list:
        yield from _models_in(args[0], f"{path}[]")
    elif origin is dict:
        yield from _models_in(args[1], f"{path}.<name>")
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, path


def yaml_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str]]:
    """("path", key) for every key of `model`; ("part", name) for parts of a string-written one."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        path = f"{prefix}{key}"
        yield "path", path
        for nested, at in _models_in(info.annotation, path):
            if _written_as_string(nested):
                yield from (("part", part) for part in nested.model_fields)
            else:
                yield from yaml_keys(nested, f"{at}.")


KEYS = sorted(set(yaml_keys(Topology)))


def test_the_walk_reaches_nested_models_through_lists_unions_and_dicts() -> None:
    paths = {value for kind, value in KEYS if kind == "path"}
    assert {
        "apiVersion",
        "sources[].schema",
        "sources[].watermark.idle_timeout",
        "stages[].validate.rules[].expr",
        "stages[].key_by.expr",
        "stages[].window.hopping.advance",
        "retry.backoff.jitter",
    } <= paths
    assert {value for kind, value in KEYS if kind == "part"} == {"function", "field"}


@pytest.mark.parametrize(("kind", "key"), KEYS, ids=[key for _, key in KEYS])
def test_every_topology_key_is_documented(kind: str, key: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert f"`{key}`" in doc, f"docs/topology.md does not document the {kind} `{key}`"
