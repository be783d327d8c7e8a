"""The run index's filter language: Temporal's List Filter subset, compiled to parameterised SQL.

    ExecutionStatus = 'Running' AND (WorkflowType = 'Transfer' OR StartTime > '2026-12-01')
    ORDER BY StartTime DESC

`compile_filter(query, dialect=..., attribute_types=...)` parses the text (`syntax`), checks
every name and value against its type (the built-ins in BUILTINS, the custom search
attributes in `attribute_types`), and returns a `CompiledFilter`: a WHERE expression with
placeholders and its parameters, and an ORDER BY list. Nothing from the user's text is spliced
into the WHERE expression: names map through a whitelist of columns, custom attribute names
and values travel as parameters. Only ORDER BY names a custom attribute in SQL, through a JSON
path built from a registered name that is a plain identifier.

Semantics worth knowing: a comparison with a missing value is false, `!=` and `NOT IN`
included (as in SQL); ask for absence with `IS NULL`. On a keyword list attribute `=` and
`IN` mean "contains"; on a text attribute `=` means "contains this word" (case-insensitive,
words split at spaces and , . ; : !). Every error is a `FilterError` pointing at the token.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias, assert_never

from streams.errors import FilterError
from streams.visibility.syntax import (
    KEYWORDS,
    NAME_PATTERN,
    OPERATOR_PATTERN,
    And,
    Between,
    Comparison,
    Constant,
    Expr,
    InList,
    IsNull,
    Name,
    Or,
    OrderItem,
    StartsWith,
    Value,
    parse_filter,
)
from streams.wire.records import SearchAttributeType

Dialect = Literal["sqlite", "postgresql"]

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


@dataclass(frozen=True, slots=True)
class OrderTerm:
    """One term of an ORDER BY: a SQL expression over `runs`, its direction, where NULLs go.

    `nulls_first` is None for an expression that is never NULL (no NULLS clause is written,
    so an index in the same direction serves the order in both dialects)."""

    sql: str
    descending: bool = False
    nulls_first: bool | None = None

    def __str__(self) -> str:
        text = f"{self.sql} {'DESC' if self.descending else 'ASC'}"
        if self.nulls_first is not None:
            text += " NULLS FIRST" if self.nulls_first else " NULLS LAST"
        return text

    def reversed(self) -> OrderTerm:
        """The term in the opposite order (NULLs on the other side too)."""
        nulls = None if self.nulls_first is None else not self.nulls_first
        return OrderTerm(self.sql, not self.descending, nulls)


DEFAULT_ORDER_TERMS = (
    OrderTerm("close_time", descending=True, nulls_first=True),
    OrderTerm("start_time", descending=True),
    OrderTerm("run_id"),
)
"""DEFAULT_ORDER as terms (what keyset paging reads)."""

_NEVER_NULL = frozenset({
    "run_id", "workflow_id", "workflow_type", "task_queue", "status", "start_time",
    "history_length", "pending_activities", "max_attempt",
})  # fmt: skip
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
_PUNCTUATION = ",.;:!"  # split words like spaces do, in text attributes
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
    order: tuple[OrderTerm, ...] = DEFAULT_ORDER_TERMS
    """`order_by` as terms, for keyset paging (`keyset_condition`)."""


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
    order_by = compiler.order_by(parsed.order_by)
    return CompiledFilter(where, tuple(params), order_by, compiler.order_terms(parsed.order_by))


def keyset_condition(
    order: Sequence[OrderTerm], values: Sequence[object], *, dialect: Dialect
) -> tuple[str, list[object]]:
    """The WHERE condition (and its parameters) that keeps the rows strictly after a row
    whose `order` expressions have `values`, in that order: keyset paging.

    Rows after are those greater on the first term, or equal on it and greater on the
    second, and so on; "greater" follows each term's direction and where its NULLs go. The
    last term must make the order total (run_id). A first term that is never NULL also gets
    a plain range bound, so an index on it seeks instead of scanning from the start."""
    if len(values) != len(order):
        raise ValueError(f"a cursor of {len(values)} values for an order of {len(order)} terms")
    ph = "?" if dialect == "sqlite" else "%s"
    alternatives: list[str] = []
    params: list[object] = []
    equal: list[str] = []
    equal_params: list[object] = []
    for term, value in zip(order, values, strict=True):
        after, after_params = _after(term, value, ph)
        if after != "1=0":
            alternatives.append(" AND ".join([*equal, after]))
            params += [*equal_params, *after_params]
        if value is None:
            equal.append(f"{term.sql} IS NULL")
        else:
            equal.append(f"{term.sql} = {ph}")
            equal_params.append(value)
    condition = "(" + " OR ".join(f"({a})" for a in alternatives) + ")" if alternatives else "1=0"
    first, value = order[0], values[0]
    if first.nulls_first is not False and value is not None:
        bound = f"{first.sql} {'<=' if first.descending else '>='} {ph}"
        return f"{bound} AND {condition}", [value, *params]
    return condition, params


def _after(term: OrderTerm, value: object, ph: str) -> tuple[str, list[object]]:
    """Rows strictly after `value` on this one term."""
    # NULLs come first ascending in SQLite and last ascending in PostgreSQL; every term that
    # may be NULL says where they go (nulls_first), so only never-NULL terms omit it
    if value is None:
        return ("1=0", []) if not term.nulls_first else (f"{term.sql} IS NOT NULL", [])
    test = f"{term.sql} {'<' if term.descending else '>'} {ph}"
    if term.nulls_first is False:
        return f"({test} OR {term.sql} IS NULL)", [value]
    return test, [value]


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
            article = "an" if kind[0] in "aeiou" else "a"
            ops = ", ".join(o for o in _OPERATOR_ORDER if o in allowed)
            written = OPERATOR_PATTERN.match(self.query, position) or NAME_PATTERN.match(
                self.query, position
            )
            raise self.error(
                f"{field.name} is {article} {kind} attribute: it takes {ops}, not {op}",
                position,
                written.group() if written else op,
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
            case And() | Or():
                # a chain `a OR b OR c` is a left-deep tree: walk it, do not recurse down it
                kind = type(node)
                operands = [node.right]
                left = node.left
                while isinstance(left, kind):
                    operands.append(left.right)
                    left = left.left
                operands.append(left)
                parts = [self.expr(operand) for operand in reversed(operands)]
                word = " AND " if kind is And else " OR "
                params = [p for _, part_params in parts for p in part_params]
                return "(" + word.join(text for text, _ in parts) + ")", params
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
                # a prefix of a status is not itself one: check it as a plain keyword
                as_keyword = _Field(field.name, "keyword", field.column)
                return self.starts_with(field, str(self.value(as_keyword, prefix)))
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

    def order_terms(self, items: tuple[OrderItem, ...]) -> tuple[OrderTerm, ...]:
        """The same order as `order_by`, as terms (called after it has checked the names)."""
        if not items:
            return DEFAULT_ORDER_TERMS
        terms = []
        for item in items:
            field = self.field(item.name)
            # a column that is never NULL needs no NULLS clause: its keyset bound can seek
            nulls = None if field.column in _NEVER_NULL else False
            terms.append(OrderTerm(self.order_column(field), item.descending, nulls))
        if "RunId" not in [item.name.name for item in items]:
            terms.append(OrderTerm("run_id"))
        return tuple(terms)

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
