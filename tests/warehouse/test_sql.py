"""Loading SQL: a query names shared text as a fragment (``{{name}}``), replaced when it is loaded."""

from __future__ import annotations

from importlib import resources

import pytest

from ticklake.warehouse.sql import fragment, query_statements, script


def query_names() -> list[str]:
    folder = resources.files("ticklake.warehouse") / "queries"
    return sorted(entry.name.removesuffix(".sql") for entry in folder.iterdir() if entry.name.endswith(".sql"))


@pytest.mark.parametrize("name", query_names())
def test_every_query_loads_with_its_fragments_replaced(name: str) -> None:
    statements = script(name)
    assert statements and not any("{{" in statement for statement in statements)


def test_a_fragment_is_replaced_by_its_text_without_comments() -> None:
    [statement] = query_statements("SELECT\n    {{gold_candle_states}}\nFROM silver_trades;\n")
    assert statement.startswith("SELECT\n    argMinState(price, (ts, trade_id)) AS open,\n")
    assert statement.endswith("\n    max(now()) AS updated_at\nFROM silver_trades")
    assert statement.count("\n") == fragment("gold_candle_states").count("\n") + 2


def test_a_fragment_inside_a_line_keeps_the_rest_of_the_line() -> None:
    [statement] = query_statements("SELECT exchange, {{gold_candle_states}} FROM silver_trades GROUP BY exchange")
    assert statement.startswith("SELECT exchange, argMinState(price, (ts, trade_id)) AS open,\nmaxState(price)")
    assert statement.endswith("AS updated_at FROM silver_trades GROUP BY exchange")


def test_a_fragment_named_in_a_comment_is_left_out() -> None:
    assert query_statements("-- compare {{gold_candle_states}}\nSELECT 1;\n") == ["SELECT 1"]


def test_an_unknown_fragment_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"no SQL fragment 'gold_candles': expected fragments/gold_candles\.sql"):
        query_statements("SELECT {{gold_candles}} FROM silver_trades")


def test_query_parameters_are_not_fragments() -> None:
    assert query_statements("SELECT {a:UInt32}, {timeframes:Array(UInt32)}") == \
        ["SELECT {a:UInt32}, {timeframes:Array(UInt32)}"]
