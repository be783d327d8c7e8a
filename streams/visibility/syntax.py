"""The filter language's syntax: tokens, a small tree of frozen nodes, a recursive-descent parser.

    ExecutionStatus = 'Running' AND (WorkflowType = 'Transfer' OR StartTime > '2026-12-01')
    ORDER BY StartTime DESC

`parse_filter(query)` gives a `Query` (condition and ORDER BY terms) or raises FilterError
pointing at the bad token. Nodes keep where they were written, so that `query.compile_filter`,
which checks names and value types, can point at them too. Keywords are case-insensitive;
names are not. Strings take 'single' or "double" quotes, the quote doubled or
backslash-escaped inside.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

from streams.errors import FilterError

# ---- tokens ---------------------------------------------------------------------------------

KEYWORDS = frozenset(
    {"AND", "OR", "BETWEEN", "IN", "NOT", "STARTS_WITH", "IS", "NULL", "ORDER", "BY", "ASC",
     "DESC", "TRUE", "FALSE"}
)  # fmt: skip
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
OPERATOR_PATTERN = re.compile(r"<=|>=|!=|<>|=|<|>")
MAX_NESTING = 50
"""How deep parentheses may nest: deeper is surely a mistake (and would exhaust the stack)."""
MAX_CONDITIONS = 500
"""How many conditions a filter may join (SQLite refuses expressions nested 1000 deep)."""
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
            tokens.append(_read_number(query, number))
            i = number.end()
        elif operator := OPERATOR_PATTERN.match(query, i):
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


def _read_number(query: str, match: re.Match[str]) -> Token:
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
    return Token("number", text, value, match.start())


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
        self.depth = 0  # parentheses open around the current token
        self.conditions = 0

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
            if self.depth == MAX_NESTING:
                raise self.error(
                    f"parentheses nest too deep (at most {MAX_NESTING}): simplify the filter",
                    opening,
                )
            self.depth += 1
            expr = self.or_expr()
            self.depth -= 1
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
            if token.kind == "keyword" and token.value == "NOT":
                raise self.error("NOT only comes in NOT IN and IS NOT NULL; use != or NOT IN")
            what = (
                f"the keyword {token.text!r}" if token.kind == "keyword" else self.describe(token)
            )
            raise self.error(f"expected an attribute name such as WorkflowId, got {what}")
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise self.error(
                f"too many conditions (at most {MAX_CONDITIONS}): to match one of many values "
                "use IN ('a', 'b', ...)"
            )
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
