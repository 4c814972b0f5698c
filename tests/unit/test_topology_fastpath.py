"""The Python translation of simple CEL expressions gives CEL's own answers, errors included."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamline.topology.expressions import EvaluationError, compile_expression

SAMPLE: dict[str, Any] = {
    "amount": 1.5,
    "count": 3,
    "currency": "EUR",
    "status": "PAID",
    "paid": True,
    "raw": b"\x00",
}

TRANSLATED = [
    "amount > 0.0",
    "amount > 0.0 && currency in ['EUR', 'USD']",
    "status == 'PAID' || count >= 10",
    "!paid",
    "!(amount <= 2.5) && paid",
    "!paid == false",
    "status != 'NEW' && !status.startsWith('X')",
    "currency.endsWith('R') || currency.contains('S')",
    "size(raw) == 1 && status != ''",
    "amount < -1.5 || count == -3",
    "paid == true && (count < 5 || amount >= 100.0)",
    "raw == raw && currency < status",
]

NOT_TRANSLATED = [
    "amount + 1.0 > 2.0",  # arithmetic stays with CEL
    "amount > 0",  # mixed int/double comparison
    "count / 2 == 1",
    "paid ? amount > 1.0 : false",
    "currency in {'EUR': 1}",
    r"status == 'P\'AID'",
    "count == 3u",
    "size(status) > 3",  # the engine counts UTF-8 bytes of strings
]


def compiled(expr: str, fast: bool) -> Any:
    expression = compile_expression(expr, list(SAMPLE))
    if fast:
        expression.accelerate(SAMPLE)
    return expression


def outcome(expression: Any, record: dict[str, Any]) -> Any:
    try:
        return ("value", expression.evaluate(record))
    except EvaluationError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("expr", TRANSLATED)
def test_common_expressions_skip_the_cel_engine(expr: str) -> None:
    assert compiled(expr, fast=True).accelerated


@pytest.mark.parametrize("expr", NOT_TRANSLATED)
def test_everything_else_runs_on_cel(expr: str) -> None:
    try:
        expression = compiled(expr, fast=True)
    except Exception:
        return  # CEL itself rejects it
    assert not expression.accelerated
    assert outcome(expression, SAMPLE) == outcome(compiled(expr, fast=False), SAMPLE)


def test_unary_not_binds_to_its_operand_as_in_cel() -> None:
    # CEL reads `!paid == false` as `(!paid) == false`; Python's `not` would take the comparison.
    assert compiled("!paid == false", fast=True).evaluate(SAMPLE) is True
    assert compiled("!paid == false", fast=False).evaluate(SAMPLE) is True


def test_a_field_of_another_type_gets_cels_error() -> None:
    record = dict(SAMPLE, amount=None)
    fast, slow = compiled("amount > 0.0", True), compiled("amount > 0.0", False)
    assert outcome(fast, record) == outcome(slow, record)
    assert outcome(fast, record)[0] == "error"


@pytest.mark.parametrize("expr", ["amount > 0.0", "amount == 1.5", "amount != 1.5"])
def test_nan_gets_cels_answer(expr: str) -> None:
    record = dict(SAMPLE, amount=math.nan)
    assert outcome(compiled(expr, True), record) == outcome(compiled(expr, False), record)


def test_a_missing_field_gets_cels_error() -> None:
    record = {k: v for k, v in SAMPLE.items() if k != "currency"}
    fast = compiled("currency == 'EUR'", True)
    assert outcome(fast, record) == (
        "error",
        """"currency == 'EUR'": the record has no field 'currency'""",
    )


values = {
    "amount": st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.none(), st.integers(-5, 5)
    ),
    "count": st.one_of(st.integers(-(2**63), 2**63 - 1), st.none(), st.booleans()),
    "currency": st.one_of(st.sampled_from(["EUR", "USD", "GBP", ""]), st.text(max_size=4)),
    "status": st.one_of(st.sampled_from(["PAID", "NEW", "XPAID"]), st.text(max_size=4)),
    "paid": st.one_of(st.booleans(), st.none(), st.integers(0, 1)),
    "raw": st.one_of(st.binary(max_size=3), st.text(max_size=2)),
}


@settings(max_examples=300, deadline=None)
@given(record=st.fixed_dictionaries(values), expr=st.sampled_from(TRANSLATED))
def test_translation_agrees_with_cel_on_any_record(record: dict[str, Any], expr: str) -> None:
    fast, slow = outcome(compiled(expr, True), record), outcome(compiled(expr, False), record)
    if fast[0] == "value" and isinstance(fast[1], float) and math.isnan(fast[1]):
        assert math.isnan(slow[1])
    else:
        assert fast == slow


def single_outcome(expression: Any, record: dict[str, Any]) -> Any:
    try:
        return ("value", expression.evaluator(record))
    except EvaluationError as exc:
        return ("error", str(exc))


@settings(max_examples=300, deadline=None)
@given(record=st.fixed_dictionaries(values), expr=st.sampled_from(TRANSLATED))
def test_the_one_call_evaluator_agrees_with_cel_on_any_record(
    record: dict[str, Any], expr: str
) -> None:
    # what the stages call: the translation with CEL as its own fallback
    expression = compiled(expr, True)
    assert expression.evaluator is not expression.evaluate
    single, slow = single_outcome(expression, record), outcome(compiled(expr, False), record)
    if single[0] == "value" and isinstance(single[1], float) and math.isnan(single[1]):
        assert math.isnan(slow[1])
    else:
        assert single == slow


def test_the_one_call_evaluator_gives_cels_errors() -> None:
    missing = {k: v for k, v in SAMPLE.items() if k != "currency"}
    assert single_outcome(compiled("currency == 'EUR'", True), missing) == (
        "error",
        """"currency == 'EUR'": the record has no field 'currency'""",
    )
    other_type = dict(SAMPLE, amount=None)
    assert single_outcome(compiled("amount > 0.0", True), other_type) == outcome(
        compiled("amount > 0.0", False), other_type
    )
    # not translated: the evaluator is CEL's evaluate itself
    expression = compiled("amount + 1.0 > 2.0", True)
    assert single_outcome(expression, SAMPLE) == ("value", True)
