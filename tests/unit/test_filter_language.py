"""The run index's filter language: parsing, literals, precedence, errors, and the SQL it makes.

Which runs the SQL selects is proven on real databases in tests/integration/test_filter_sql.py;
here: the tree the parser builds, the parameters the values become, what an error points at.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

import streams
from streams.errors import EverflowError, FilterError
from streams.visibility.query import (
    DEFAULT_ORDER,
    Dialect,
    compile_filter,
    epoch_ms,
    is_attribute_name,
    parse_datetime,
    parse_duration,
)
from streams.visibility.syntax import (
    MAX_CONDITIONS,
    MAX_NESTING,
    And,
    Between,
    Comparison,
    Constant,
    InList,
    IsNull,
    Name,
    Or,
    OrderItem,
    Query,
    StartsWith,
    parse_filter,
    tokenize,
)
from streams.wire.records import SearchAttributeType

TYPES = {
    "Region": SearchAttributeType.KEYWORD,
    "Note": SearchAttributeType.TEXT,
    "Count": SearchAttributeType.INT,
    "Amount": SearchAttributeType.DOUBLE,
    "Vip": SearchAttributeType.BOOL,
    "Due": SearchAttributeType.DATETIME,
    "Tags": SearchAttributeType.KEYWORD_LIST,
}
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgresql")


def sql(query: str, dialect: Dialect = "sqlite") -> tuple[str, tuple[object, ...]]:
    compiled = compile_filter(query, dialect=dialect, attribute_types=TYPES)
    return compiled.where, compiled.params


def params(query: str) -> tuple[object, ...]:
    return sql(query)[1]


def error(query: str) -> FilterError:
    with pytest.raises(FilterError) as caught:
        compile_filter(query, dialect="sqlite", attribute_types=TYPES)
    return caught.value


def pointed_at(e: FilterError) -> str:
    """The text the caret line of str(e) underlines."""
    _, line, caret = str(e).split("\n")
    start = caret.index("^")
    return line[start : start + caret.count("^")]


def name(n: str, position: int) -> Name:
    return Name(n, position)


# ---- parsing -------------------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    tree = parse_filter("A = 1 OR B = 2 AND C = 3")
    assert isinstance(tree.where, Or)
    assert isinstance(tree.where.left, Comparison) and tree.where.left.name.name == "A"
    assert isinstance(tree.where.right, And)
    assert [tree.where.right.left.name.name, tree.where.right.right.name.name] == ["B", "C"]  # type: ignore[union-attr]


def test_parentheses_override_precedence() -> None:
    tree = parse_filter("(A = 1 OR B = 2) AND C = 3")
    assert isinstance(tree.where, And)
    assert isinstance(tree.where.left, Or)
    assert isinstance(tree.where.right, Comparison) and tree.where.right.name.name == "C"


def test_chains_of_and_or_group_from_the_left() -> None:
    tree = parse_filter("A = 1 AND B = 2 AND C = 3")
    assert isinstance(tree.where, And) and isinstance(tree.where.left, And)


def test_every_predicate_parses_to_its_node() -> None:
    tree = parse_filter(
        "A BETWEEN 1 AND 2 AND B IN ('x', 'y') AND C NOT IN (3) AND D STARTS_WITH 'p' "
        "AND E IS NULL AND F IS NOT NULL AND G >= 4"
    )
    nodes: list[object] = []
    node = tree.where
    while isinstance(node, And):
        nodes.append(node.right)
        node = node.left
    nodes.append(node)
    nodes.reverse()
    assert [type(n) for n in nodes] == [
        Between, InList, InList, StartsWith, IsNull, IsNull, Comparison
    ]  # fmt: skip
    between, in_list, not_in, starts, is_null, not_null, compare = nodes
    assert isinstance(between, Between) and (between.low.value, between.high.value) == (1, 2)
    assert isinstance(in_list, InList) and [v.value for v in in_list.values] == ["x", "y"]
    assert not in_list.negated
    assert isinstance(not_in, InList) and not_in.negated
    assert isinstance(starts, StartsWith) and starts.prefix.value == "p"
    assert isinstance(is_null, IsNull) and not is_null.negated
    assert isinstance(not_null, IsNull) and not_null.negated
    assert isinstance(compare, Comparison) and compare.op == ">="


def test_keywords_are_case_insensitive() -> None:
    # same lengths, so the same positions: the trees are equal
    assert parse_filter("A = 1 and B = 2 Or C between 1 aNd 2 order by A desc") == parse_filter(
        "A = 1 AND B = 2 OR C BETWEEN 1 AND 2 ORDER BY A DESC"
    )
    lower = compile_filter(
        "ExecutionStatus = 'Running' and Count > 5 or Vip = FALSE order by StartTime desc",
        dialect="sqlite",
        attribute_types=TYPES,
    )
    upper = compile_filter(
        "ExecutionStatus = 'Running' AND Count > 5 OR Vip = false ORDER BY StartTime DESC",
        dialect="sqlite",
        attribute_types=TYPES,
    )
    assert lower == upper


def test_order_by_alone_and_the_empty_query() -> None:
    assert parse_filter("") == Query(None, ())
    assert parse_filter("  \n ") == Query(None, ())
    assert parse_filter("ORDER BY A, B DESC, C ASC") == Query(
        None,
        (
            OrderItem(name("A", 9), False),
            OrderItem(name("B", 12), True),
            OrderItem(name("C", 20), False),
        ),
    )


def test_nodes_remember_where_they_were_written() -> None:
    tree = parse_filter("  Count <= 42")
    assert tree.where == Comparison(name("Count", 2), "<=", 8, Constant(42, "42", 11))


# ---- literals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'plain'", "plain"),
        ('"double"', "double"),
        ("'it''s'", "it's"),
        ('"say ""hi"""', 'say "hi"'),
        ("'it\\'s'", "it's"),
        ('"a \\"b\\""', 'a "b"'),
        ("'back\\\\slash'", "back\\slash"),
        ("'line\\nbreak\\ttab'", "line\nbreak\ttab"),
        ("'keeps \\d unknown escapes'", "keeps \\d unknown escapes"),
        ("'\"other quote\" inside'", '"other quote" inside'),
        ("''", ""),
        ("'AND OR ( ) ='", "AND OR ( ) ="),
    ],
)
def test_string_literals_unquote(text: str, value: str) -> None:
    assert params(f"WorkflowId = {text}") == (value,)


@pytest.mark.parametrize(
    ("text", "value"),
    [("42", 42), ("-7", -7), ("0", 0), ("2.5", 2.5), ("-0.25", -0.25), ("1e3", 1000.0)],
)
def test_number_literals(text: str, value: object) -> None:
    (token, _) = tokenize(text)
    assert token.kind == "number" and token.value == value and type(token.value) is type(value)


def test_integers_and_decimals_go_to_their_attribute_types() -> None:
    assert params("Count = -3") == ("$.Count", -3)
    assert params("Amount > 2") == ("$.Amount", 2.0) and isinstance(params("Amount > 2")[1], float)
    assert params("Amount <= 2.75") == ("$.Amount", 2.75)
    assert params("HistoryLength BETWEEN 1 AND 9") == (1, 9)


def test_booleans() -> None:
    assert params("Vip = true") == ("$.Vip", True)
    assert params("Vip != FALSE") == ("$.Vip", False)
    assert params("Blocked = true") == ("Blocked",)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01T10:00:00+02:00", datetime(2026, 12, 1, 8, tzinfo=UTC)),
        ("2026-12-01T10:00:00-05:30", datetime(2026, 12, 1, 15, 30, tzinfo=UTC)),
        ("2026-12-01T10:00:00.250Z", datetime(2026, 12, 1, 10, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-12-01T10:00:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),  # no offset: UTC
        ("2026-12-01 10:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_datetimes_become_epoch_milliseconds(text: str, moment: datetime) -> None:
    expected = int(moment.timestamp() * 1000)
    assert params(f"StartTime >= '{text}'") == (expected,)
    assert params(f"Due < '{text}'") == ("$.Due", expected)


def test_parse_datetime_and_epoch_ms() -> None:
    assert parse_datetime("2026-12-01T10:00:00+01:00") == datetime(
        2026, 12, 1, 10, tzinfo=timezone(timedelta(hours=1))
    )
    assert parse_datetime("yesterday") is None
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 1, 5000, tzinfo=UTC)) == 1005


@pytest.mark.parametrize(
    ("text", "milliseconds"),
    [
        ("'250ms'", 250),
        ("'90s'", 90_000),
        ("'5m'", 300_000),
        ("'2h'", 7_200_000),
        ("'1d'", 86_400_000),
        ("'1h30m'", 5_400_000),
        ("'1.5s'", 1_500),
        ("90000", 90_000),
    ],
)
def test_durations_become_milliseconds(text: str, milliseconds: int) -> None:
    assert params(f"ExecutionDuration > {text}") == (milliseconds,)


def test_parse_duration_refuses_what_is_not_one() -> None:
    assert parse_duration("2h") == timedelta(hours=2)
    for text in ("", "5", "5 minutes", "h", "5x", "-5s"):
        assert parse_duration(text) is None, text


# ---- errors --------------------------------------------------------------------------------


def test_an_error_shows_the_message_the_query_and_a_caret_under_the_bad_token() -> None:
    e = error("WorkflowId = 'a' AND Colour = 'red'")
    assert (e.query, e.position, e.token) == ("WorkflowId = 'a' AND Colour = 'red'", 21, "Colour")
    assert str(e).split("\n") == [
        e.message,
        "  WorkflowId = 'a' AND Colour = 'red'",
        "                       ^^^^^^",
    ]
    assert isinstance(e, EverflowError) and streams.FilterError is FilterError


def test_an_error_on_a_later_line_shows_that_line() -> None:
    e = error("ExecutionStatus = 'Running'\n  AND Count > 'many'")
    assert e.token == "'many'"
    assert str(e).split("\n")[1:] == ["    AND Count > 'many'", "                ^^^^^^"]


def test_unknown_name_suggests_close_names() -> None:
    e = error("WorkflowID = 'x'")
    assert (e.position, e.token) == (0, "WorkflowID")
    assert "unknown attribute 'WorkflowID'" in e.message
    assert "did you mean WorkflowId" in e.message and "case-sensitive" in e.message
    assert "Regoin" in error("Regoin = 'eu'").message
    assert "did you mean Region" in error("Regoin = 'eu'").message


def test_unknown_name_without_a_close_match_lists_the_known_names() -> None:
    e = error("Zzz = 1")
    assert "known names: " in e.message
    for known in ("WorkflowId", "StartTime", "Blocked", "Region", "Tags"):
        assert known in e.message


@pytest.mark.parametrize(
    ("query", "token", "message"),
    [
        ("StartTime > 'yesterday'", "'yesterday'", "StartTime needs a datetime like"),
        ("CloseTime < 5", "5", "CloseTime needs a datetime like '2026-12-01T10:00:00Z', got 5"),
        ("Due = true", "true", "Due needs a datetime like"),
        ("HistoryLength = 'ten'", "'ten'", "HistoryLength needs an integer like 42"),
        ("Count = 2.5", "2.5", "Count needs an integer like 42"),
        ("Amount = 'lots'", "'lots'", "Amount needs a number like 2.5"),
        ("Vip = 'yes'", "'yes'", "Vip needs true or false"),
        ("Blocked = 1", "1", "Blocked needs true or false"),
        ("WorkflowId = 42", "42", "WorkflowId needs a string in quotes like 'order-42'"),
        ("Tags = true", "true", "Tags needs a string in quotes"),
        ("ExecutionDuration > '5 minutes'", "'5 minutes'", "needs a duration like '90s'"),
        ("ExecutionDuration > 1.5", "1.5", "ExecutionDuration needs a duration"),
        ("ExecutionStatus = 'Done'", "'Done'", "ExecutionStatus needs one of 'Running', 'Blocked'"),
        ("Note = ' . '", "' . '", "Note needs a word to look for"),
        ("Count IN (1, 'two')", "'two'", "Count needs an integer"),
        ("StartTime BETWEEN '2026-12-01' AND 'later'", "'later'", "StartTime needs a datetime"),
    ],
)  # fmt: skip
def test_a_value_of_the_wrong_type_is_named_with_an_example(
    query: str, token: str, message: str
) -> None:
    e = error(query)
    assert message in e.message
    assert e.token == token and query[e.position : e.position + len(token)] == token
    assert pointed_at(e) == token


def test_a_datetime_error_shows_the_form_expected() -> None:
    assert error("StartTime > 'yesterday'").message == (
        "StartTime needs a datetime like '2026-12-01T10:00:00Z', got 'yesterday'"
    )


def test_a_status_in_the_wrong_case_suggests_the_right_one() -> None:
    assert "did you mean 'Running'?" in error("ExecutionStatus = 'running'").message


@pytest.mark.parametrize(
    ("query", "token", "message"),
    [
        ("(Count = 1", "(", "unclosed parenthesis"),
        ("Count = 1 AND ((Vip = true)", "(", "unclosed parenthesis"),
        ("Count IN (1, 2", "(", "unclosed parenthesis"),
        ("Region = 'eu", "'eu", "unclosed quote"),
        ('Region = "eu', '"eu', "unclosed quote"),
        ("Region = 'it''s", "'it''s", "unclosed quote"),
    ],
)
def test_an_unclosed_parenthesis_or_quote_points_at_where_it_opened(
    query: str, token: str, message: str
) -> None:
    e = error(query)
    assert message in e.message and e.token == token
    assert e.position == query.rindex(token) if token != "(" else True
    assert pointed_at(e) == token


def test_unclosed_parenthesis_points_at_the_one_left_open() -> None:
    assert error("Count = 1 AND ((Vip = true)").position == 14


@pytest.mark.parametrize(
    ("query", "token", "message"),
    [
        ("Region = 'eu' Count = 1", "Count", "join conditions with AND or OR"),
        ("Region = 'eu' ORDER BY Count banana", "banana", "after a complete filter"),
        ("Region = 'eu')", ")", "unmatched ')'"),
        ("(Region = 'eu' Count = 1)", "Count", "expected ')' to close the '(' at column 0"),
        ("Region = 'eu' AND", "", "expected an attribute name such as WorkflowId, got the end"),
        ("Region = 'eu' AND OR Count = 1", "OR", "got the keyword 'OR'"),
        ("= 'eu'", "=", "expected an attribute name"),
        ("Region 'eu'", "'eu'", "expected an operator after Region"),
        ("Region =", "", "expected a value"),
        ("Region = eu", "eu", "put strings in quotes: 'eu'"),
        ("Region = NULL", "NULL", "IS NULL or IS NOT NULL"),
        ("Region IS 'eu'", "'eu'", "expected NULL after IS"),
        ("Region IS NOT 1", "1", "expected NULL after IS NOT"),
        ("Region NOT 'eu'", "'eu'", "expected IN after NOT"),
        ("Region IN 'eu'", "'eu'", "expected '(' to start the IN list"),
        ("Region IN ('eu' 'us')", "'us'", "expected ',' or ')' in the IN list"),
        ("Count BETWEEN 1 OR 2", "OR", "expected AND in 'Count BETWEEN low AND high'"),
        ("Region = 'eu' ORDER Count", "Count", "expected BY after ORDER"),
        ("ORDER BY", "", "expected an attribute name to ORDER BY"),
        ("Region = 'eu' & Count = 1", "&", "unexpected character '&'"),
        ("StartTime > 2026-12-01", "2026-12-01", "put dates, times and durations in quotes"),
        ("ExecutionDuration > 5m", "5m", "'5m' is not a number"),
    ],
)  # fmt: skip
def test_malformed_filters_point_at_the_bad_token(query: str, token: str, message: str) -> None:
    e = error(query)
    assert message in e.message, e.message
    assert e.token == token
    assert e.position == (query.rindex(token) if token else len(query))
    assert e.query == query


@pytest.mark.parametrize(
    ("query", "token", "message"),
    [
        ("Vip > true", ">", "Vip is a bool attribute: it takes =, !=, IS NULL, not >"),
        ("Blocked IN (true)", "IN", "Blocked is a bool attribute"),
        ("Note < 'b'", "<", "Note is a text attribute: it takes =, !=, IN, NOT IN, IS NULL"),
        ("Tags BETWEEN 'a' AND 'b'", "BETWEEN", "Tags is a keyword list attribute"),
        ("Tags STARTS_WITH 'a'", "STARTS_WITH", "not STARTS_WITH"),
        ("Count STARTS_WITH '1'", "STARTS_WITH", "Count is an int attribute"),
        ("Vip NOT IN (true)", "NOT", "not NOT IN"),
        ("Vip<>true OR Vip>=true", ">=", "not >="),
    ],
)
def test_an_operator_the_type_lacks_is_refused(query: str, token: str, message: str) -> None:
    e = error(query)
    assert message in e.message, e.message
    assert e.token == token and e.position == query.index(token)


@pytest.mark.parametrize(
    ("query", "token", "message"),
    [
        ("ORDER BY Colour", "Colour", "unknown attribute 'Colour'"),
        ("ORDER BY StartTme DESC", "StartTme", "did you mean StartTime"),
        ("Count > 1 ORDER BY Tags", "Tags", "cannot ORDER BY Tags: it has no order"),
        ("ORDER BY StartTime, Note", "Note", "cannot ORDER BY Note"),
        ("ORDER BY Blocked", "Blocked", "order by one of WorkflowId"),
        ("ORDER BY 'StartTime'", "'StartTime'", "expected an attribute name to ORDER BY"),
    ],
)
def test_a_bad_order_by_field_is_refused(query: str, token: str, message: str) -> None:
    e = error(query)
    assert message in e.message, e.message
    assert e.token == token and e.position == query.index(token)


def test_a_long_chain_of_conditions_compiles_flat() -> None:
    query = " OR ".join(f"WorkflowId = 'w{i}'" for i in range(MAX_CONDITIONS))
    where, values = sql(query)
    assert where == "(" + " OR ".join(["workflow_id = ?"] * MAX_CONDITIONS) + ")"
    assert len(values) == MAX_CONDITIONS
    e = error(query + " OR RunId = 'r'")
    assert "too many conditions" in e.message and "IN (" in e.message
    assert (e.token, e.position) == ("RunId", len(query) + 4)


def test_parentheses_nest_only_so_deep() -> None:
    nested = "(" * MAX_NESTING + "Count = 1" + ")" * MAX_NESTING
    assert sql(nested) == ("json_extract(search_attributes, ?) = ?", ("$.Count", 1))
    e = error("(" + nested + ")")
    assert "nest too deep" in e.message and e.position == MAX_NESTING


def test_not_before_a_condition_says_what_to_use_instead() -> None:
    e = error("NOT Region = 'eu'")
    assert "use != or NOT IN" in e.message and (e.token, e.position) == ("NOT", 0)


def test_an_unknown_dialect_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown SQL dialect"):
        compile_filter("", dialect="mysql", attribute_types={})  # type: ignore[arg-type]


# ---- the SQL -------------------------------------------------------------------------------

QUERIES = [
    "WorkflowId = 'secret-wf' AND RunId != 'secret-run'",
    "WorkflowType IN ('SecretType', 'OtherSecret') OR TaskQueue NOT IN ('secretq')",
    "ParentWorkflowId STARTS_WITH 'secretprefix' AND ParentRunId IS NULL",
    "ExecutionStatus = 'Running' OR (StartTime > '2031-07-09T11:12:13Z' AND HistoryLength > 98765)",
    "CloseTime BETWEEN '2031-07-09' AND '2031-08-10' AND ExecutionDuration < '17h'",
    "PendingActivities >= 123456 OR ActivityAttempt = 98765 OR Blocked = true",
    "Region = 'secret-region' AND Note = 'secretword' AND Count = 424242 AND Amount > 31415.5",
    "Vip = true AND Due > '2031-07-09' AND Tags IN ('secret-tag', 'another-tag')",
    "Tags != 'hidden-tag' AND Note NOT IN ('hiddenword') AND Region IS NOT NULL",
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("query", QUERIES)
def test_the_sql_never_contains_the_users_values(dialect: Dialect, query: str) -> None:
    where, values = sql(query, dialect)
    literals = [t for t in tokenize(query) if t.kind in ("string", "number")]
    for token in literals:
        assert token.text not in where and str(token.value) not in where, (token, where)
    flat = [v for p in values for v in (p if isinstance(p, list) else [p])]
    for token in literals:
        if token.kind == "string" and "secret" in str(token.value):
            assert any(str(token.value) in str(v) for v in flat), (token, values)
    for custom in TYPES:
        assert custom not in where  # custom names travel as parameters too
    marker = "?" if dialect == "sqlite" else "%s"
    assert where.count(marker) == len(values)


def test_values_shaped_like_sql_stay_parameters() -> None:
    where, values = sql("WorkflowId = 'x'' OR 1=1 --'")
    assert where == "workflow_id = ?" and values == ("x' OR 1=1 --",)
    where, values = sql("Region = 'a''); DROP TABLE runs; --'", "postgresql")
    assert "DROP" not in where and values == ("Region", "a'); DROP TABLE runs; --")


def test_patterns_escape_the_wildcards_in_the_users_prefix() -> None:
    assert params("WorkflowId STARTS_WITH 'a*b?[c]_%'") == ("a[*]b[?][[]c]_%*",)
    assert sql("WorkflowId STARTS_WITH 'a_b%c\\\\'", "postgresql")[1] == ("a\\_b\\%c\\\\%",)
    assert params("Note = '50%_off'") == ("$.Note", "% 50\\%\\_off %")


def test_the_empty_query_matches_everything_in_the_default_order() -> None:
    for dialect, true in (("sqlite", "1=1"), ("postgresql", "TRUE")):
        compiled = compile_filter("", dialect=dialect, attribute_types={})  # type: ignore[arg-type]
        assert (compiled.where, compiled.params, compiled.order_by) == (true, (), DEFAULT_ORDER)
    assert DEFAULT_ORDER == "close_time DESC NULLS FIRST, start_time DESC, run_id"


def test_order_by_maps_names_to_columns_and_ends_with_run_id() -> None:
    def order(query: str, dialect: Dialect = "sqlite") -> str:
        return compile_filter(query, dialect=dialect, attribute_types=TYPES).order_by

    assert order("ORDER BY StartTime") == "start_time ASC NULLS LAST, run_id"
    assert order("ORDER BY CloseTime DESC, HistoryLength asc") == (
        "close_time DESC NULLS LAST, history_length ASC NULLS LAST, run_id"
    )
    assert order("ORDER BY ActivityAttempt DESC, RunId") == (
        "max_attempt DESC NULLS LAST, run_id ASC NULLS LAST"
    )
    assert order("ORDER BY Count DESC") == (
        "json_extract(search_attributes, '$.Count') DESC NULLS LAST, run_id"
    )
    assert order("ORDER BY Count DESC, Amount, Vip, Due", "postgresql") == (
        "(search_attributes ->> 'Count')::bigint DESC NULLS LAST, "
        "(search_attributes ->> 'Amount')::double precision ASC NULLS LAST, "
        "(search_attributes ->> 'Vip')::boolean ASC NULLS LAST, "
        "(search_attributes ->> 'Due')::bigint ASC NULLS LAST, run_id"
    )
    assert order("ORDER BY WorkflowId, Region DESC", "postgresql") == (
        'workflow_id COLLATE "C" ASC NULLS LAST, '
        "(search_attributes ->> 'Region') COLLATE \"C\" DESC NULLS LAST, run_id"
    )


def test_postgresql_casts_custom_attributes_by_type() -> None:
    assert sql("Count > 1", "postgresql")[0] == "(search_attributes ->> %s::text)::bigint > %s"
    assert sql("Amount > 1", "postgresql")[0].startswith(
        "(search_attributes ->> %s::text)::double precision"
    )
    assert sql("Vip = true", "postgresql")[0].startswith(
        "(search_attributes ->> %s::text)::boolean"
    )
    assert sql("Due > '2026-01-01'", "postgresql")[0].startswith(
        "(search_attributes ->> %s::text)::bigint"
    )
    assert sql("Tags IN ('a', 'b')", "postgresql") == (
        "((search_attributes -> %s::text) ?| %s::text[])",
        ("Tags", ["a", "b"]),
    )


def test_sqlite_reads_keyword_lists_with_json_each() -> None:
    assert sql("Tags = 'a'") == (
        "EXISTS (SELECT 1 FROM json_each(search_attributes, ?) WHERE value IN (?))",
        ("$.Tags", "a"),
    )


def test_registered_names_that_are_not_identifiers_are_never_used() -> None:
    assert is_attribute_name("Customer_2") and is_attribute_name("_x")
    for bad in ("2fast", "a-b", "a b", "x'); --", "", "Order", "and", "WorkflowId"):
        assert not is_attribute_name(bad), bad
    types = {"a-b": SearchAttributeType.KEYWORD, "Good": SearchAttributeType.INT}
    compiled = compile_filter("Good = 1 ORDER BY Good", dialect="sqlite", attribute_types=types)
    assert compiled.params == ("$.Good", 1)
    with pytest.raises(FilterError, match=r"known names: .*Good") as caught:
        compile_filter("a = 1", dialect="sqlite", attribute_types=types)
    assert "a-b" not in caught.value.message


def test_a_builtin_name_wins_over_a_registered_one() -> None:
    types = {"WorkflowId": SearchAttributeType.INT}
    compiled = compile_filter("WorkflowId = 'w'", dialect="sqlite", attribute_types=types)
    assert (compiled.where, compiled.params) == ("workflow_id = ?", ("w",))


def test_a_status_prefix_need_not_be_a_whole_status() -> None:
    assert sql("ExecutionStatus STARTS_WITH 'Cont'") == ("status GLOB ?", ("Cont*",))


def test_blocked_reads_the_status() -> None:
    assert sql("Blocked = true") == ("status = ?", ("Blocked",))
    assert sql("Blocked = false") == ("status <> ?", ("Blocked",))
    assert sql("Blocked != false") == ("status = ?", ("Blocked",))
