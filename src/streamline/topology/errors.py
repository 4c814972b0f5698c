"""TopologyError: everything wrong with a topology, one line per problem, named by file and path.

Paths are written as in the spec (`stages[3].window.size`). pydantic's
validation errors are translated here into the same form, without pydantic's
wording, error codes or links.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from streamline.errors import UsageError
from streamline.topology.model import TAG_PREFIX, TAGGED_TYPES, Topology


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (`stages[1].filter`, or "" for the whole file) and what."""

    path: str
    message: str


class TopologyError(UsageError):
    """A topology file that cannot be loaded or does not type-check (exit status 2).

    The message has one line per problem: `file[:line]: path: what was expected`.
    """

    def __init__(
        self,
        origin: str,
        problems: Sequence[Problem],
        lines: Mapping[str, int] | None = None,
    ) -> None:
        self.origin = origin
        self.problems = list(problems)
        self.lines = dict(lines or {})
        super().__init__("\n".join(self._line(p) for p in self.problems))

    def _line(self, problem: Problem) -> str:
        where = self.origin
        line = line_of(problem.path, self.lines)
        if line is not None:
            where = f"{where}:{line}"
        return (
            f"{where}: {problem.path}: {problem.message}"
            if problem.path
            else f"{where}: {problem.message}"
        )


def line_of(path: str, lines: Mapping[str, int]) -> int | None:
    """The file line of `path`, or of its nearest enclosing key when it has none (a missing key)."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def join_path(parts: Iterable[str | int]) -> str:
    """('stages', 3, 'window', 'size') -> 'stages[3].window.size'."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def problems_from_validation_error(exc: ValidationError) -> list[Problem]:
    """pydantic's errors for a Topology as problems with spec-style paths and plain messages."""
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        raw_loc = tuple(error["loc"])
        loc = [p for p in raw_loc if not (isinstance(p, str) and p.startswith(TAG_PREFIX))]
        ctx = error.get("ctx") or {}
        if error["type"] == "topology" and "problems" in ctx:
            for sub_path, message in ctx["problems"]:
                path = join_path(loc)
                problems.append(Problem(f"{path}.{sub_path}" if path else sub_path, message))
            continue
        problems.append(Problem(join_path(loc), _message(error, raw_loc)))
    unique: dict[Problem, None] = dict.fromkeys(problems)
    return list(unique)


def describe(value: Any) -> str:
    """A YAML value as a user wrote it, for 'got ...' in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str | int | float):
        return repr(value)
    return type(value).__name__


def _message(error: Any, raw_loc: tuple[str | int, ...]) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    got = describe(value)
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        return _unknown_key_message(raw_loc)
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind == "string_type":
        hint = (
            f' (quote it: "{value}")'
            if isinstance(value, int | float) and not isinstance(value, bool)
            else ""
        )
        return f"expected a string, got {got}{hint}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {got}"
    if kind == "list_type":
        return f"expected a list, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {got}"
    if kind == "too_short":
        return (
            "must not be empty"
            if ctx.get("min_length") == 1
            else f"needs at least {ctx.get('min_length')} items"
        )
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {got}"
    if kind == "greater_than":
        return f"must be more than {ctx.get('gt')}, got {got}"
    if kind == "callable_type":
        return f"expected a callable, got {got}"
    return f"{error['msg']}, got {got}"


def _unknown_key_message(raw_loc: tuple[str | int, ...]) -> str:
    key = str(raw_loc[-1])
    allowed = _allowed_keys(raw_loc[:-1])
    if not allowed:
        return "unknown key"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; expected one of: {', '.join(allowed)}"


def _allowed_keys(raw_loc: Sequence[str | int]) -> list[str]:
    """The keys the model at this error location accepts (by their file spelling)."""
    current: Any = Topology
    for part in raw_loc:
        current = _step(current, part)
        if current is None:
            return []
    model = _model_in(current)
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _leaves(annotation: Any) -> list[Any]:
    """The concrete types an annotation may hold: through Annotated, Optional and unions."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaves(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [leaf for arg in typing.get_args(annotation) for leaf in _leaves(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for leaf in _leaves(annotation):
        if isinstance(leaf, type) and issubclass(leaf, BaseModel):
            return leaf
    return None


def _step(annotation: Any, part: str | int) -> Any:
    if isinstance(part, str) and part.startswith(TAG_PREFIX):
        return TAGGED_TYPES.get(part)
    for leaf in _leaves(annotation):
        origin = typing.get_origin(leaf)
        if isinstance(part, int) and origin is list:
            return typing.get_args(leaf)[0]
        if isinstance(part, str) and origin is dict:
            return typing.get_args(leaf)[1]
        if isinstance(part, str) and isinstance(leaf, type) and issubclass(leaf, BaseModel):
            for name, field in leaf.model_fields.items():
                if part in (name, field.alias):
                    return field.annotation
    return None
