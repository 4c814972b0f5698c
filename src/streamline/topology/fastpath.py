"""A Python translation of simple CEL expressions, so rules and filters skip the CEL engine.

Most topology expressions compare fields with literals and combine the
comparisons: `amount > 0.0 && currency in ['EUR', 'USD']`. Handing each record
to CEL costs a conversion into CEL values and back (about 4 µs for that
expression); the same test as Python bytecode costs a few hundred nanoseconds.

Only a subset is translated, chosen so the result is the same as CEL's:
field names, literals (booleans, null, ints, doubles, plain strings), the
comparisons, `in` over a list literal, `&&`, `||`, `!`, parentheses, `size()` of bytes,
and `startsWith`/`endsWith`/`contains` on strings. Every comparison must have
operands of one type (taken from a sample record with the schema's types), and
the translated function first checks that each field it reads holds a value
of that type (and is not NaN, which CEL refuses to order); CEL never converts
between types, so under that guard both agree and nothing can raise. Anything else, including a record whose field has
another type (a null, or a map's output), runs on CEL itself, which keeps
CEL's exact result or error message. Arithmetic is left to CEL (int64
overflow and integer division differ from Python's).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"[^"\\\n]*"|'[^'\\\n]*')
  | (?P<number>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+(?![\w.]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\],.-])
    """,
    re.VERBOSE,
)
_LITERALS = {"true": "True", "false": "False", "null": "None"}
_METHODS = {"startsWith": "startswith", "endsWith": "endswith", "contains": "__contains__"}
_TYPES: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str", bytes: "bytes"}
_GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    "type": type,
    "len": len,
    "TypeError": TypeError,
    **{name: t for t, name in _TYPES.items()},
}
_RESERVED = frozenset({"in", "size", "not", "and", "or", "len", "r", "str", "int", "float"})


class _Untranslatable(Exception):
    """The expression is outside the subset this module translates."""


def translate(
    expr: str,
    sample: Mapping[str, Any],
    fallback: Callable[[Mapping[str, Any]], Any] | None = None,
) -> Callable[[Mapping[str, Any]], Any] | None:
    """A Python function equal to CEL `expr` on records whose fields have `sample`'s types.

    The function raises on records with other types (or missing fields); the
    caller then runs CEL. With `fallback` (CEL itself) it calls `fallback(record)` for
    those instead, so a record costs one call. None when the expression is outside the subset.
    """
    try:
        tokens = _tokenize(expr)
        fields: dict[str, str] = {}
        code = _python(tokens, sample, fields)
        tree = ast.parse(code, mode="eval")
        kind = _Checker(fields, sample).kind(tree.body)
    except (_Untranslatable, SyntaxError, RecursionError):
        return None
    if kind != "bool":
        return None
    pad = "        " if fallback is not None else "    "
    lines = ["def fast(r):"] + (["    try:"] if fallback is not None else [])
    for name, var in fields.items():
        lines.append(f"{pad}{var} = r[{name!r}]")
    guards = " or ".join(
        f"type({var}) is not {_TYPES[type(sample[name])]}"
        # CEL does not order NaN (an error, not false): such records go to CEL
        + (f" or {var} != {var}" if type(sample[name]) is float else "")
        for name, var in fields.items()
    )
    if guards:
        lines.append(f"{pad}if {guards}:")
        lines.append(f"{pad}    raise TypeError('field types differ from the schema')")
    lines.append(f"{pad}return {code}")
    if fallback is not None:
        lines += ["    except Exception:", "        return _fallback(r)"]
    namespace: dict[str, Any] = {}
    scope = {**_GLOBALS, "Exception": Exception, "_fallback": fallback}
    exec(compile("\n".join(lines), f"<cel {expr!r}>", "exec"), scope, namespace)
    fast: Callable[[Mapping[str, Any]], Any] = namespace["fast"]
    return fast


def _tokenize(expr: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise _Untranslatable(expr[pos:])
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


def _python(
    tokens: list[tuple[str, str]], sample: Mapping[str, Any], fields: dict[str, str]
) -> str:
    """Python source for CEL tokens; field names become local variables recorded in `fields`."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "op" and text == "!":
            end = _operand_end(tokens, i + 1)
            out.append(f"(not {_python(tokens[i + 1 : end], sample, fields)})")
            i = end
            continue
        if kind == "name":
            if text in _LITERALS:
                out.append(_LITERALS[text])
            elif text == "in":
                out.append(" in ")
            elif text == "size" and i + 1 < len(tokens) and tokens[i + 1][1] == "(":
                out.append("len")
            elif i > 0 and tokens[i - 1][1] == ".":
                if text not in _METHODS:
                    raise _Untranslatable(text)
                out.append(_METHODS[text])
            elif text in sample and text not in _RESERVED and type(sample[text]) in _TYPES:
                out.append(fields.setdefault(text, f"v{len(fields)}"))
            else:
                raise _Untranslatable(text)
        elif kind == "op":
            out.append({"&&": " and ", "||": " or "}.get(text, text))
        else:
            out.append(text)
        i += 1
    return "".join(out)


def _operand_end(tokens: list[tuple[str, str]], start: int) -> int:
    """Index after the unary operand starting at `start`: a name or group, then calls/members."""
    if start >= len(tokens):
        raise _Untranslatable("!")
    i = _group_end(tokens, start) if tokens[start][1] in "([" else start + 1
    while i < len(tokens) and tokens[i][1] in (".", "("):
        i = _group_end(tokens, i) if tokens[i][1] == "(" else i + 2
    return i


def _group_end(tokens: list[tuple[str, str]], start: int) -> int:
    depth = 0
    for i in range(start, len(tokens)):
        text = tokens[i][1]
        if tokens[i][0] == "op" and text in "([":
            depth += 1
        elif tokens[i][0] == "op" and text in ")]":
            depth -= 1
            if depth == 0:
                return i + 1
    raise _Untranslatable("unbalanced")


class _Checker:
    """Types each node of the translated tree; anything outside the subset is untranslatable."""

    def __init__(self, fields: dict[str, str], sample: Mapping[str, Any]) -> None:
        self.types = {var: _TYPES[type(sample[name])] for name, var in fields.items()}

    def kind(self, node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            if node.value is None or type(node.value) not in _TYPES:
                raise _Untranslatable("literal")
            return _TYPES[type(node.value)]
        if isinstance(node, ast.Name) and node.id in self.types:
            return self.types[node.id]
        if isinstance(node, ast.UnaryOp):
            operand = self.kind(node.operand)
            if isinstance(node.op, ast.Not) and operand == "bool":
                return "bool"
            negative = isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            if negative and operand in ("int", "float"):
                return operand
            raise _Untranslatable("unary")
        if isinstance(node, ast.BoolOp):
            if all(self.kind(v) == "bool" for v in node.values):
                return "bool"
            raise _Untranslatable("bool op")
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise _Untranslatable(type(node).__name__)

    def _compare(self, node: ast.Compare) -> str:
        if len(node.ops) != 1:
            raise _Untranslatable("chained comparison")
        op, right = node.ops[0], node.comparators[0]
        left = self.kind(node.left)
        if isinstance(op, ast.In):
            if not isinstance(right, ast.List) or not all(self.kind(e) == left for e in right.elts):
                raise _Untranslatable("in")
            return "bool"
        ordered = isinstance(op, (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE))
        if ordered and self.kind(right) == left:
            return "bool"
        raise _Untranslatable("comparison")

    def _call(self, node: ast.Call) -> str:
        if node.keywords:
            raise _Untranslatable("keywords")
        func = node.func
        sized = isinstance(func, ast.Name) and func.id == "len" and len(node.args) == 1
        # size() of bytes only: the CEL engine counts a string's UTF-8 bytes, not characters
        if sized and self.kind(node.args[0]) == "bytes":
            return "int"
        if (
            isinstance(func, ast.Attribute)
            and func.attr in _METHODS.values()
            and len(node.args) == 1
            and self.kind(func.value) == "str"
            and self.kind(node.args[0]) == "str"
        ):
            return "bool"
        raise _Untranslatable("call")
