"""The run index's filter language: Temporal's List Filter subset, compiled to parameterised SQL.

    ExecutionStatus = 'Running' AND (WorkflowType = 'Transfer' OR StartTime > '2026-12-01')
    ORDER BY StartTime DESC

`compile_filter(query, dialect=..., attribute_types=...)` tokenizes the text, parses it by
recursive descent into a small AST (`parse_filter`), checks every name and value against its
type, and returns a `CompiledFilter`: a WHERE expression with placeholders and its parameters,
and an ORDER BY list. Nothing from the user's text is spliced into the WHERE expression: names
map through a whitelist of columns, custom attribute names and values travel as parameters.
Only ORDER BY names a custom attribute in SQL, through a JSON path built from a registered
name that is a plain identifier.

Semantics worth knowing: a comparison with a missing value is false, `!=` and `NOT IN`
included (as in SQL); ask for absence with `IS NULL`. On a keyword list attribute `=` and
`IN` mean "contains"; on a text attribute `=` means "contains this word" (case-insensitive,
words split at spaces and , . ; : ! ?). Every error is a `FilterError` pointing at the token.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias, assert_never

from streams.errors import FilterError
from streams.wire.records import SearchAttributeType

Dialect = Literal["sqlite", "postgresql"]

# ---- tokens ---------------------------------------------------------------------------------

KEYWORDS = frozenset(
    {"AND", "OR", "BETWEEN", "IN", "NOT", "STARTS_WITH", "IS", "NULL", "ORDER", "BY", "ASC",
     "DESC", "TRUE", "FALSE"}
)  # fmt: skip
COMPARISONS = ("=", "!=", "<", ">", "<=", ">=")
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_OPERATOR = re.compile(r"<=|>=|!=|<>|=|<|>")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}

TokenKind = Literal["name", "keyword", "string", "number", "op", "(", ")", ",", "end"]


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text as written, its value and its 0-based offset."""

    kind: TokenKind
    text: str
    value: str | int | float | bool | None
    position: int


def tokenize(query: str) -> list[Token]:
    """The tokens of `query`, ending with an "end" token; FilterError on a bad character."""
    tokens: list[Token] = []
    i = 0
    while i < len(query):
        char = query[i]
        if char.isspace():
            i += 1
        elif char in "'\"":
            value, end = _read_string(query, i)
            tokens.append(Token("string", query[i:end], value, i))
            i = end
        elif char in "(),":
            tokens.append(Token(char, char, char, i))  # type: ignore[arg-type]
            i += 1
        elif number := _NUMBER.match(query, i):
            i = _read_number(query, number, tokens)
        elif operator := _OPERATOR.match(query, i):
            text = operator.group()
            tokens.append(Token("op", text, "!=" if text == "<>" else text, i))
            i = operator.end()
        elif name := NAME_PATTERN.match(query, i):
            word = name.group()
            if word.upper() in KEYWORDS:
                tokens.append(Token("keyword", word, word.upper(), i))
            else:
                tokens.append(Token("name", word, word, i))
            i = name.end()
        else:
            raise FilterError(
                f"unexpected character {char!r}: a filter is made of names, quoted values, "
                "numbers, = != < > <= >=, parentheses and AND / OR",
                query=query,
                position=i,
                token=char,
            )
    tokens.append(Token("end", "", None, len(query)))
    return tokens


def _read_string(query: str, start: int) -> tuple[str, int]:
    quote = query[start]
    out: list[str] = []
    i = start + 1
    while i < len(query):
        char = query[i]
        if char == "\\" and i + 1 < len(query):
            following = query[i + 1]
            out.append(_ESCAPES.get(following, "\\" + following))
            i += 2
        elif char == quote:
            if query[i + 1 : i + 2] == quote:  # a doubled quote stands for one
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise FilterError(
        f"unclosed quote: the string starting here has no closing {quote}",
        query=query,
        position=start,
        token=query[start:],
    )


def _read_number(query: str, match: re.Match[str], tokens: list[Token]) -> int:
    end = match.end()
    if end < len(query) and (query[end].isalnum() or query[end] in "-:._"):
        # `5m`, `2026-12-01`, `10:00`: a date or duration someone forgot to quote
        stop = end
        while stop < len(query) and not query[stop].isspace() and query[stop] not in "(),":
            stop += 1
        word = query[match.start() : stop]
        raise FilterError(
            f"{word!r} is not a number; put dates, times and durations in quotes: '{word}'",
            query=query,
            position=match.start(),
            token=word,
        )
    text = match.group()
    value: int | float = float(text) if match.group(1) or match.group(2) else int(text)
    tokens.append(Token("number", text, value, match.start()))
    return end


# ---- the syntax tree ------------------------------------------------------------------------

Value: TypeAlias = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Name:
    """An attribute name as written, and where."""

    name: str
    position: int


@dataclass(frozen=True, slots=True)
class Constant:
    """A literal value (string, number or boolean), its text as written, and where."""

    value: Value
    text: str
    position: int


@dataclass(frozen=True, slots=True)
class Comparison:
    """`name op value`, op one of = != < > <= >=."""

    name: Name
    op: str
    op_position: int
    value: Constant


@dataclass(frozen=True, slots=True)
class Between:
    """`name BETWEEN low AND high` (both ends included)."""

    name: Name
    low: Constant
    high: Constant
    op_position: int


@dataclass(frozen=True, slots=True)
class InList:
    """`name IN (values...)`, or `NOT IN` when `negated`."""

    name: Name
    values: tuple[Constant, ...]
    negated: bool
    op_position: int


@dataclass(frozen=True, slots=True)
class StartsWith:
    """`name STARTS_WITH 'prefix'`."""

    name: Name
    prefix: Constant
    op_position: int


@dataclass(frozen=True, slots=True)
class IsNull:
    """`name IS NULL`, or `IS NOT NULL` when `negated`."""

    name: Name
    negated: bool


@dataclass(frozen=True, slots=True)
class And:
    """Both sides hold."""

    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Or:
    """Either side holds."""

    left: Expr
    right: Expr


Expr: TypeAlias = Comparison | Between | InList | StartsWith | IsNull | And | Or


@dataclass(frozen=True, slots=True)
class OrderItem:
    """One `ORDER BY` term."""

    name: Name
    descending: bool


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed filter: the condition (None: every run) and the ORDER BY terms."""

    where: Expr | None
    order_by: tuple[OrderItem, ...]


def parse_filter(query: str) -> Query:
    """Parses `query` into a `Query`; FilterError (with the bad token's position) if it is not
    a well-formed filter. Names and value types are checked later, by `compile_filter`."""
    return _Parser(query).parse()


class _Parser:
    """Recursive descent over the grammar:

    query     := [or_expr] [ORDER BY order_item (',' order_item)*] end
    or_expr   := and_expr (OR and_expr)*
    and_expr  := primary (AND primary)*
    primary   := '(' or_expr ')' | predicate
    predicate := name ( op value | BETWEEN value AND value | [NOT] IN '(' value (',' value)* ')'
                      | STARTS_WITH value | IS [NOT] NULL )
    """

    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.index = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.token.kind == "keyword" and self.token.value in words

    def error(self, message: str, token: Token | None = None) -> FilterError:
        token = token or self.token
        return FilterError(message, query=self.query, position=token.position, token=token.text)

    def describe(self, token: Token) -> str:
        return "the end of the filter" if token.kind == "end" else repr(token.text)

    def parse(self) -> Query:
        where = None
        if self.token.kind != "end" and not self.at_keyword("ORDER"):
            where = self.or_expr()
        order_by = self.order_by() if self.at_keyword("ORDER") else ()
        if self.token.kind == ")":
            raise self.error("unmatched ')': there is no '(' before it to close")
        if self.token.kind != "end":
            raise self.error(
                f"unexpected {self.describe(self.token)} after a complete filter: join "
                "conditions with AND or OR, and put ORDER BY last"
            )
        return Query(where, order_by)

    def or_expr(self) -> Expr:
        expr = self.and_expr()
        while self.at_keyword("OR"):
            self.advance()
            expr = Or(expr, self.and_expr())
        return expr

    def and_expr(self) -> Expr:
        expr = self.primary()
        while self.at_keyword("AND"):
            self.advance()
            expr = And(expr, self.primary())
        return expr

    def primary(self) -> Expr:
        if self.token.kind == "(":
            opening = self.advance()
            expr = self.or_expr()
            if self.token.kind != ")":
                if self.token.kind == "end":
                    raise self.error("unclosed parenthesis: this '(' has no matching ')'", opening)
                raise self.error(
                    f"expected ')' to close the '(' at column {opening.position}, got "
                    f"{self.describe(self.token)}"
                )
            self.advance()
            return expr
        return self.predicate()

    def predicate(self) -> Expr:
        token = self.token
        if token.kind != "name":
            what = (
                f"the keyword {token.text!r}" if token.kind == "keyword" else self.describe(token)
            )
            raise self.error(f"expected an attribute name such as WorkflowId, got {what}")
        self.advance()
        name = Name(str(token.value), token.position)
        op = self.token
        if op.kind == "op":
            self.advance()
            return Comparison(name, str(op.value), op.position, self.value())
        if self.at_keyword("BETWEEN"):
            self.advance()
            low = self.value()
            if not self.at_keyword("AND"):
                raise self.error(
                    f"expected AND in '{name.name} BETWEEN low AND high', got "
                    f"{self.describe(self.token)}"
                )
            self.advance()
            return Between(name, low, self.value(), op.position)
        if self.at_keyword("NOT", "IN"):
            negated = self.advance().value == "NOT"
            if negated and not self.at_keyword("IN"):
                raise self.error(f"expected IN after NOT, got {self.describe(self.token)}")
            if negated:
                self.advance()
            return InList(name, self.value_list(), negated, op.position)
        if self.at_keyword("STARTS_WITH"):
            self.advance()
            return StartsWith(name, self.value(), op.position)
        if self.at_keyword("IS"):
            self.advance()
            negated = self.at_keyword("NOT")
            if negated:
                self.advance()
            if not self.at_keyword("NULL"):
                raise self.error(
                    f"expected NULL after IS{' NOT' if negated else ''}, got "
                    f"{self.describe(self.token)}"
                )
            self.advance()
            return IsNull(name, negated)
        raise self.error(
            f"expected an operator after {name.name} (= != < > <= >= BETWEEN IN NOT IN "
            f"STARTS_WITH IS NULL), got {self.describe(op)}"
        )

    def value(self) -> Constant:
        token = self.token
        if token.kind in ("string", "number") or (
            token.kind == "keyword" and token.value in ("TRUE", "FALSE")
        ):
            self.advance()
            if token.kind == "keyword":
                return Constant(token.value == "TRUE", token.text, token.position)
            assert isinstance(token.value, str | int | float)
            return Constant(token.value, token.text, token.position)
        if token.kind == "keyword" and token.value == "NULL":
            raise self.error("compare with NULL using IS NULL or IS NOT NULL")
        if token.kind == "name":
            raise self.error(
                f"expected a value, got the name {token.text!r}; put strings in quotes: "
                f"'{token.text}'"
            )
        raise self.error(
            f"expected a value (a 'quoted string', a number, true or false), got "
            f"{self.describe(token)}"
        )

    def value_list(self) -> tuple[Constant, ...]:
        if self.token.kind != "(":
            raise self.error(f"expected '(' to start the IN list, got {self.describe(self.token)}")
        opening = self.advance()
        values = [self.value()]
        while self.token.kind == ",":
            self.advance()
            values.append(self.value())
        if self.token.kind != ")":
            if self.token.kind == "end":
                raise self.error("unclosed parenthesis: this '(' has no matching ')'", opening)
            raise self.error(f"expected ',' or ')' in the IN list, got {self.describe(self.token)}")
        self.advance()
        return tuple(values)

    def order_by(self) -> tuple[OrderItem, ...]:
        self.advance()
        if not self.at_keyword("BY"):
            raise self.error(f"expected BY after ORDER, got {self.describe(self.token)}")
        self.advance()
        items = [self.order_item()]
        while self.token.kind == ",":
            self.advance()
            items.append(self.order_item())
        return tuple(items)

    def order_item(self) -> OrderItem:
        token = self.token
        if token.kind != "name":
            raise self.error(f"expected an attribute name to ORDER BY, got {self.describe(token)}")
        self.advance()
        descending = False
        if self.at_keyword("ASC", "DESC"):
            descending = self.advance().value == "DESC"
        return OrderItem(Name(token.text, token.position), descending)


# ---- compiling to SQL -----------------------------------------------------------------------

STATUSES = (
    "Running", "Blocked", "Completed", "Failed", "Canceled", "Terminated", "TimedOut",
    "ContinuedAsNew",
)  # fmt: skip

# The kinds of value a name holds: the seven SearchAttributeType values, plus the built-ins'
# `status` (a keyword from STATUSES), `duration` (milliseconds) and `blocked` (status test).
Kind = Literal[
    "keyword", "text", "int", "double", "bool", "datetime", "keyword_list", "status", "duration",
    "blocked",
]  # fmt: skip

BUILTINS: Mapping[str, tuple[str, Kind]] = {
    "WorkflowId": ("workflow_id", "keyword"),
    "RunId": ("run_id", "keyword"),
    "WorkflowType": ("workflow_type", "keyword"),
    "TaskQueue": ("task_queue", "keyword"),
    "ExecutionStatus": ("status", "status"),
    "StartTime": ("start_time", "datetime"),
    "CloseTime": ("close_time", "datetime"),
    "ExecutionDuration": ("execution_duration", "duration"),
    "HistoryLength": ("history_length", "int"),
    "ParentWorkflowId": ("parent_workflow_id", "keyword"),
    "ParentRunId": ("parent_run_id", "keyword"),
    "PendingActivities": ("pending_activities", "int"),
    "ActivityAttempt": ("max_attempt", "int"),
    "Blocked": ("status", "blocked"),
}
"""The built-in names of the filter language and the `runs` columns they read."""

DEFAULT_ORDER = "close_time DESC NULLS FIRST, start_time DESC, run_id"
"""Without ORDER BY: open runs first, then the latest closed, then the latest started."""

_RANGE = frozenset({"=", "!=", "<", ">", "<=", ">=", "BETWEEN", "IN", "NOT IN", "IS NULL"})
_OPERATORS: Mapping[Kind, frozenset[str]] = {
    "keyword": _RANGE | {"STARTS_WITH"},
    "status": _RANGE | {"STARTS_WITH"},
    "int": _RANGE,
    "double": _RANGE,
    "datetime": _RANGE,
    "duration": _RANGE,
    "text": frozenset({"=", "!=", "IN", "NOT IN", "IS NULL"}),
    "keyword_list": frozenset({"=", "!=", "IN", "NOT IN", "IS NULL"}),
    "bool": frozenset({"=", "!=", "IS NULL"}),
    "blocked": frozenset({"=", "!=", "IS NULL"}),
}
_OPERATOR_ORDER = ("=", "!=", "<", ">", "<=", ">=", "BETWEEN", "IN", "NOT IN", "STARTS_WITH",
                   "IS NULL")  # fmt: skip
_UNORDERED: frozenset[Kind] = frozenset({"text", "keyword_list", "blocked"})
_HINTS: Mapping[Kind, str] = {
    "keyword": "a string in quotes like 'order-42'",
    "text": "a word in quotes like 'refund'",
    "keyword_list": "a string in quotes like 'urgent'",
    "status": "one of " + ", ".join(f"'{s}'" for s in STATUSES),
    "int": "an integer like 42",
    "double": "a number like 2.5",
    "bool": "true or false",
    "blocked": "true or false",
    "datetime": "a datetime like '2026-12-01T10:00:00Z'",
    "duration": "a duration like '90s', '5m', '2h', '1d', '250ms', or milliseconds like 90000",
}
_PUNCTUATION = ",.;:!?"  # split words like spaces do, in text attributes
_PG_CASTS: Mapping[Kind, str] = {
    "int": "::bigint",
    "datetime": "::bigint",
    "double": "::double precision",
    "bool": "::boolean",
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_MILLISECONDS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """A filter as SQL over the `runs` table.

    `where` is a boolean expression with placeholders (`?` for sqlite, `%s` for postgresql)
    for `params`, in order; `order_by` is the ORDER BY list without the keywords, ending with
    `run_id` so the order is total. Use them as
    `SELECT ... FROM runs WHERE {where} ORDER BY {order_by}` with `params`.
    """

    where: str
    params: tuple[object, ...]
    order_by: str


def is_attribute_name(name: str) -> bool:
    """Whether `name` can be a custom search attribute: an identifier (letters, digits, `_`,
    not starting with a digit), neither a built-in name nor a keyword of the language.

    The compiler ignores registered names that are not: the projector should refuse them."""
    return (
        NAME_PATTERN.fullmatch(name) is not None
        and name not in BUILTINS
        and name.upper() not in KEYWORDS
    )


def compile_filter(
    query: str,
    *,
    dialect: Dialect,
    attribute_types: Mapping[str, SearchAttributeType],
) -> CompiledFilter:
    """Compiles a filter to SQL for `dialect` over the `runs` table.

    `attribute_types` maps each registered custom search attribute to its type (the
    `search_attribute_types` table). An empty query matches every run, in the default order.
    Raises FilterError, pointing at the token, for a malformed filter, an unknown name, a
    value of the wrong type for its name, an operator the name's type lacks, or an ORDER BY
    on a name that has no order.
    """
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"unknown SQL dialect {dialect!r}: use 'sqlite' or 'postgresql'")
    parsed = parse_filter(query)
    compiler = _Compiler(query, dialect, attribute_types)
    where: str = "1=1" if dialect == "sqlite" else "TRUE"
    params: list[object] = []
    if parsed.where is not None:
        where, params = compiler.expr(parsed.where)
    return CompiledFilter(where, tuple(params), compiler.order_by(parsed.order_by))


def parse_datetime(text: str) -> datetime | None:
    """An ISO 8601 date or datetime as an aware datetime (UTC when it has no offset), or None."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_duration(text: str) -> timedelta | None:
    """A duration such as '90s', '5m', '2h', '1d', '250ms' or '1h30m', or None."""
    position, total = 0, 0.0
    text = text.strip()
    while position < len(text):
        part = _DURATION_PART.match(text, position)
        if part is None:
            return None
        total += float(part.group(1)) * _MILLISECONDS[part.group(2)]
        position = part.end()
    return timedelta(milliseconds=round(total)) if text else None


def epoch_ms(moment: datetime) -> int:
    """An aware datetime as milliseconds since the Unix epoch (how the index stores instants)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: Kind
    column: str | None  # the `runs` column of a built-in; None for a custom attribute


Sql: TypeAlias = tuple[str, list[object]]


class _Compiler:
    def __init__(
        self, query: str, dialect: Dialect, attribute_types: Mapping[str, SearchAttributeType]
    ) -> None:
        self.query = query
        self.dialect = dialect
        self.ph = "?" if dialect == "sqlite" else "%s"
        self.custom = {
            name: SearchAttributeType(kind).value
            for name, kind in attribute_types.items()
            if is_attribute_name(name)
        }

    def error(self, message: str, position: int, token: str) -> FilterError:
        return FilterError(message, query=self.query, position=position, token=token)

    # -- names and values --

    def field(self, name: Name) -> _Field:
        if name.name in BUILTINS:
            column, kind = BUILTINS[name.name]
            return _Field(name.name, kind, column)
        if name.name in self.custom:
            return _Field(name.name, self.custom[name.name], None)  # type: ignore[arg-type]
        known = sorted([*BUILTINS, *self.custom])
        close = [k for k in known if k.lower() == name.name.lower()]
        close += [k for k in difflib.get_close_matches(name.name, known, n=3) if k not in close]
        if close:
            hint = "did you mean " + " or ".join(close) + "? (names are case-sensitive)"
        else:
            hint = "known names: " + ", ".join(known)
        raise self.error(f"unknown attribute {name.name!r}; {hint}", name.position, name.name)

    def value(self, field: _Field, literal: Constant) -> object:
        converted = _convert(field.kind, literal.value)
        if converted is None:
            message = f"{field.name} needs {_HINTS[field.kind]}, got {literal.text}"
            if field.kind == "status" and isinstance(literal.value, str):
                close = [s for s in STATUSES if s.lower() == literal.value.lower()]
                if close:
                    message += f"; did you mean '{close[0]}'? (values are case-sensitive)"
            raise self.error(message, literal.position, literal.text)
        if field.kind == "text" and not _words(str(converted)).strip():
            raise self.error(
                f"{field.name} needs a word to look for, got {literal.text}",
                literal.position,
                literal.text,
            )
        return converted

    def check_operator(self, field: _Field, op: str, position: int) -> None:
        allowed = _OPERATORS[field.kind]
        if op not in allowed:
            kind = "bool" if field.kind == "blocked" else field.kind.replace("_", " ")
            ops = ", ".join(o for o in _OPERATOR_ORDER if o in allowed)
            token = self.query[position:].split(None, 1)[0] if op != "!=" else op
            raise self.error(
                f"{field.name} is a {kind} attribute: it takes {ops}, not {op}", position, token
            )

    # -- SQL --

    def column(self, field: _Field, *, cast: bool = True) -> Sql:
        """The SQL for a name's value (None when the run lacks it)."""
        if field.column is not None:
            return field.column, []
        if self.dialect == "sqlite":
            return "json_extract(search_attributes, ?)", [f"$.{field.name}"]
        suffix = _PG_CASTS.get(field.kind, "") if cast else ""
        return f"(search_attributes ->> %s::text){suffix}", [field.name]

    def expr(self, node: Expr) -> Sql:
        match node:
            case And(left, right) | Or(left, right):
                word = "AND" if isinstance(node, And) else "OR"
                (lsql, lparams), (rsql, rparams) = self.expr(left), self.expr(right)
                return f"({lsql} {word} {rsql})", lparams + rparams
            case Comparison(name, op, position, literal):
                field = self.field(name)
                self.check_operator(field, op, position)
                return self.comparison(field, op, self.value(field, literal))
            case Between(name, low, high, position):
                field = self.field(name)
                self.check_operator(field, "BETWEEN", position)
                sql, params = self.ordered(field)
                bounds = [self.value(field, low), self.value(field, high)]
                return f"{sql} BETWEEN {self.ph} AND {self.ph}", params + bounds
            case InList(name, literals, negated, position):
                field = self.field(name)
                self.check_operator(field, "NOT IN" if negated else "IN", position)
                values = [self.value(field, v) for v in literals]
                return self.in_list(field, values, negated)
            case StartsWith(name, prefix, position):
                field = self.field(name)
                self.check_operator(field, "STARTS_WITH", position)
                return self.starts_with(field, str(self.value(field, prefix)))
            case IsNull(name, negated):
                sql, params = self.column(self.field(name), cast=False)
                return f"{sql} IS {'NOT ' if negated else ''}NULL", params
            case _:
                assert_never(node)

    def ordered(self, field: _Field) -> Sql:
        """The column for <, >, BETWEEN: strings compare by code point in both dialects."""
        sql, params = self.column(field)
        if self.dialect == "postgresql" and field.kind in ("keyword", "status"):
            sql = f'{sql} COLLATE "C"'
        return sql, params

    def comparison(self, field: _Field, op: str, value: object) -> Sql:
        if field.kind == "blocked":
            wanted = (op == "=") == value
            return f"status {'=' if wanted else '<>'} {self.ph}", ["Blocked"]
        if field.kind == "text":
            sql, params = self.contains_word(field, [str(value)])
            return (sql, params) if op == "=" else (f"NOT {sql}", params)
        if field.kind == "keyword_list":
            return self.in_list(field, [value], negated=op == "!=")
        sql, params = self.ordered(field) if op not in ("=", "!=") else self.column(field)
        return f"{sql} {'<>' if op == '!=' else op} {self.ph}", [*params, value]

    def in_list(self, field: _Field, values: list[object], negated: bool) -> Sql:
        if field.kind == "text":
            sql, params = self.contains_word(field, [str(v) for v in values])
        elif field.kind == "keyword_list":
            sql, params = self.list_contains(field, [str(v) for v in values])
        else:
            column, params = self.column(field)
            marks = ", ".join([self.ph] * len(values))
            return f"{column} {'NOT IN' if negated else 'IN'} ({marks})", [*params, *values]
        if not negated:
            return sql, params
        # a run without the attribute matches neither IN nor NOT IN, as in SQL
        present, present_params = self.column(field, cast=False)
        return f"({present} IS NOT NULL AND NOT {sql})", [*present_params, *params]

    def list_contains(self, field: _Field, values: list[str]) -> Sql:
        """Whether the keyword list holds any of `values` (NULL/false when absent)."""
        if self.dialect == "sqlite":
            marks = ", ".join("?" * len(values))
            sql = f"EXISTS (SELECT 1 FROM json_each(search_attributes, ?) WHERE value IN ({marks}))"
            return sql, [f"$.{field.name}", *values]
        return "((search_attributes -> %s::text) ?| %s::text[])", [field.name, values]

    def contains_word(self, field: _Field, words: list[str]) -> Sql:
        """Whether the text holds any of `words` as a whole word (case-insensitive)."""
        column, params = self.column(field)
        haystack = f"lower({column})"
        for mark in _PUNCTUATION:
            haystack = f"replace({haystack}, '{mark}', ' ')"
        test = f"(' ' || {haystack} || ' ') LIKE {self.ph} ESCAPE '\\'"
        out: list[object] = []
        for word in words:
            out += [*params, f"% {_escape_like(_words(word).strip())} %"]
        return "(" + " OR ".join([test] * len(words)) + ")", out

    def starts_with(self, field: _Field, prefix: str) -> Sql:
        column, params = self.column(field)
        if self.dialect == "sqlite":  # GLOB, unlike LIKE, is case-sensitive in SQLite
            pattern = "".join(f"[{c}]" if c in "*?[" else c for c in prefix) + "*"
            return f"{column} GLOB ?", [*params, pattern]
        return f"{column} LIKE %s", [*params, _escape_like(prefix) + "%"]

    def order_by(self, items: tuple[OrderItem, ...]) -> str:
        if not items:
            return DEFAULT_ORDER
        terms = []
        for item in items:
            field = self.field(item.name)
            if field.kind in _UNORDERED:
                orderable = [n for n, (_, k) in BUILTINS.items() if k not in _UNORDERED]
                orderable += sorted(n for n, k in self.custom.items() if k not in _UNORDERED)
                raise self.error(
                    f"cannot ORDER BY {field.name}: it has no order; order by one of "
                    + ", ".join(orderable),
                    item.name.position,
                    item.name.name,
                )
            terms.append(f"{self.order_column(field)} {'DESC' if item.descending else 'ASC'}")
        if "RunId" not in [item.name.name for item in items]:
            terms.append("run_id")
        return ", ".join(f"{t} NULLS LAST" if t != "run_id" else t for t in terms)

    def order_column(self, field: _Field) -> str:
        # ORDER BY takes no parameters, so a custom attribute's name is written into the SQL:
        # safe because it is a registered name that is a plain identifier (is_attribute_name)
        if field.column is not None:
            sql = field.column
        elif self.dialect == "sqlite":
            sql = f"json_extract(search_attributes, '$.{field.name}')"
        else:
            sql = f"(search_attributes ->> '{field.name}'){_PG_CASTS.get(field.kind, '')}"
        if self.dialect == "postgresql" and field.kind in ("keyword", "status"):
            sql = f'{sql} COLLATE "C"'
        return sql


def _convert(kind: Kind, value: Value) -> object:
    """`value` as the index stores a `kind`, or None if it is not one."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    match kind:
        case "keyword" | "text" | "keyword_list":
            return value if isinstance(value, str) else None
        case "status":
            return value if value in STATUSES else None
        case "int":
            return value if is_number and isinstance(value, int) else None
        case "double":
            return float(value) if is_number else None
        case "bool" | "blocked":
            return value if isinstance(value, bool) else None
        case "datetime":
            moment = parse_datetime(value) if isinstance(value, str) else None
            return epoch_ms(moment) if moment is not None else None
        case "duration":
            if is_number and isinstance(value, int):
                return value
            span = parse_duration(value) if isinstance(value, str) else None
            return span // timedelta(milliseconds=1) if span is not None else None
        case _:
            assert_never(kind)


def _words(text: str) -> str:
    """Text as a text attribute's words are matched: lower case, punctuation as spaces."""
    return text.lower().translate({ord(c): " " for c in _PUNCTUATION})


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
