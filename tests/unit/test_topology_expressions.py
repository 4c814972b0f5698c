"""CEL expressions: compiled once against the source fields, evaluated per record."""

import re

import pytest

from streamline.topology.expressions import (
    EvaluationError,
    ExpressionError,
    compile_expression,
    loop_variables,
)

ORDER_FIELDS = ["order_id", "customer_id", "amount", "currency", "status", "country", "created_at"]
ORDER = {
    "order_id": "o-1",
    "customer_id": "c-1",
    "amount": 12.5,
    "currency": "EUR",
    "status": "PAID",
    "country": "DE",
    "created_at": 1_700_000_000_000,
}


def test_evaluate_runs_the_expression_over_a_record() -> None:
    expression = compile_expression("amount > 0.0 && currency in ['EUR', 'USD']", ORDER_FIELDS)
    assert expression.evaluate(ORDER) is True
    assert expression.evaluate({**ORDER, "currency": "GBP"}) is False


def test_only_the_fields_read_are_passed_to_cel() -> None:
    assert compile_expression("status == 'PAID'", ORDER_FIELDS).fields == ("status",)


def test_an_unknown_field_is_named_with_the_known_ones() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("stauts == 'PAID'", ORDER_FIELDS, schema_name="com.example.Order")
    assert str(caught.value) == (
        "unknown field 'stauts' (did you mean 'status'?); fields of com.example.Order: "
        + ", ".join(ORDER_FIELDS)
    )


def test_several_unknown_fields_are_all_named() -> None:
    with pytest.raises(ExpressionError, match="unknown fields 'a', 'b'"):
        compile_expression("a == b", ORDER_FIELDS)


def test_syntax_errors_are_one_line_with_the_column() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("amount >", ORDER_FIELDS)
    message = str(caught.value)
    assert message.startswith("invalid CEL 'amount >' at column 9: Syntax error: mismatched input")
    assert "\n" not in message


def test_builtins_and_macros_are_not_taken_for_fields() -> None:
    expression = compile_expression(
        "size(tags) > 0 && tags.exists(t, t.startsWith('vip')) && tags.all(x, size(x) < 9)"
        " && tags.map(m, m + '!').filter(f, f.contains('a')).size() >= 0 && has(meta.id)",
        ["tags", "meta"],
    )
    assert expression.fields == ("meta", "tags")
    assert expression.evaluate({"tags": ["vip-1"], "meta": {"id": 1}}) is True


def test_loop_variables_are_not_read_from_string_literals() -> None:
    assert loop_variables("name == '.exists(q, q)' && xs.exists(v, v > 1)") == {"v"}


def test_a_field_named_like_a_builtin_is_still_a_field() -> None:
    assert compile_expression("size > 3", ["size"]).evaluate({"size": 4}) is True


def test_without_field_names_only_syntax_is_checked() -> None:
    assert compile_expression("anything == 1", None).fields == ("anything",)


def test_a_missing_field_at_run_time_is_an_evaluation_error() -> None:
    expression = compile_expression("status == 'PAID'", ORDER_FIELDS)
    with pytest.raises(EvaluationError, match="the record has no field 'status'"):
        expression.evaluate({"amount": 1.0})


def test_a_type_error_at_run_time_is_an_evaluation_error() -> None:
    expression = compile_expression("amount + 1 > 2.0", ORDER_FIELDS)
    with pytest.raises(EvaluationError, match=re.escape("amount + 1 > 2.0")):
        expression.evaluate(ORDER)


@pytest.mark.parametrize(
    ("expr", "expect_bool", "trouble"),
    [
        ("sise(status) > 1", True, "unknown function 'sise' (did you mean 'size'?)"),
        ("timestamp(created_at) > timestamp('2020-01-01T00:00:00Z')", True, "timestamp() does not"),
        ("amount + 1 > 2.0", True, "type error with the schema's field types"),
        ("amount * 2.0", True, "must evaluate to true or false, got float"),
    ],
)
def test_probing_finds_errors_that_do_not_depend_on_values(
    expr: str, expect_bool: bool, trouble: str
) -> None:
    problem = compile_expression(expr, ORDER_FIELDS).probe(ORDER, expect_bool=expect_bool)
    assert problem is not None and trouble in problem


@pytest.mark.parametrize(
    "expr",
    ["amount / 0.0 > 1.0", "int(status) > 0", "country + '/' + currency"],
)
def test_probing_ignores_value_dependent_failures_and_non_boolean_keys(expr: str) -> None:
    assert compile_expression(expr, ORDER_FIELDS).probe(ORDER, expect_bool=False) is None
