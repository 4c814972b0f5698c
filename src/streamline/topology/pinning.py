"""The run fingerprint: one hash that pins everything that decides what a topology computes.

A topology's own fingerprint (`Topology.fingerprint`) covers its definition. The run
fingerprint covers that and also the contents of the schema files it names, the source
of the modules its map functions live in, and the streamline version, so two runs with
the same run fingerprint ran the same code on the same schemas. `streamline validate`
prints it; lineage events, heartbeats, the `streamline_info` metric, output headers,
replay plans, audit events and evidence manifests carry it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any

import streamline
from streamline.serde.schema_store import Schema
from streamline.topology.model import Topology, callable_name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def schema_digest(schema: Schema) -> str:
    """sha256 of the schema's file, else of its canonical form (a schema not from a file)."""
    if schema.path is not None:
        try:
            return _sha256(schema.path.read_bytes())
        except OSError:
            pass
    return _sha256(schema.canonical_form.encode())


def code_digest(function: Callable[..., Any]) -> str:
    """sha256 of the source of the module defining `function` (its helpers included), else of
    the function's own source, else of its name (no source to read, e.g. a builtin)."""
    for target in (inspect.getmodule(function), function):
        if target is None:
            continue
        try:
            return _sha256(inspect.getsource(target).encode())
        except (OSError, TypeError):
            continue
    return _sha256(callable_name(function).encode())


def run_fingerprint(
    topology: Topology, schemas: Iterable[Schema], functions: Iterable[Callable[..., Any]]
) -> str:
    """sha256 hex over the definition, the schema files, the map code and the streamline version."""
    pinned = {
        "topology": topology.fingerprint,
        "schemas": {s.name: schema_digest(s) for s in schemas},
        "code": {callable_name(f): code_digest(f) for f in functions},
        "streamline": streamline.__version__,
    }
    return _sha256(json.dumps(pinned, sort_keys=True, separators=(",", ":")).encode())
