"""The run index's store: one SQL database (SQLite or PostgreSQL), its tables, reads and writes.

    store = open_store("sqlite:///var/everflow/visibility/prod.sqlite")   # or a bare path
    store = open_store("postgresql://everflow@db:5432/everflow")          # psycopg, lazily

Both dialects have the same tables and columns (`runs`, `pending_activities`,
`search_attribute_types`, `history_pages`, `offsets`); PostgreSQL keeps search attributes as
JSONB with a GIN index. SQLite runs in WAL mode with a busy timeout, so readers never block
the projector. The projector (`processors.visibility`) writes a batch of rows and the Kafka
offsets it consumed in one transaction (`write_batch`); the client reads (`list_runs`,
`count_runs`, `describe_run`), the Web UI also `history_page` (where a page of a run's history
starts). SQL text here is this module's own: a filter's WHERE and ORDER BY come from
`streams.visibility.query` with the values as parameters.

Raises VisibilityUnavailableError when the store is missing or cannot be reached. Parsing a
store URL and connecting live in `streams.visibility.connection`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from streams.errors import VisibilityUnavailableError
from streams.visibility import schema
from streams.visibility.connection import (
    HOW_TO_START,
    StoreLocation,
    connect_postgresql,
    connect_sqlite,
    parse_url,
    shown,
)
from streams.visibility.query import (
    DEFAULT_ORDER,
    DEFAULT_ORDER_TERMS,
    OrderTerm,
    keyset_condition,
)
from streams.visibility.records import (
    ActivityRow,
    HistoryPage,
    PendingActivity,
    RunRow,
    WorkflowCount,
    WorkflowExecution,
    from_millis,
)
from streams.visibility.schema import Dialect
from streams.wire.records import SearchAttributeType

log = logging.getLogger(__name__)


RUN_COLUMNS = (
    "run_id",
    "workflow_id",
    "workflow_type",
    "task_queue",
    "status",
    "start_time",
    "close_time",
    "execution_duration",
    "history_length",
    "last_event_id",
    "parent_workflow_id",
    "parent_run_id",
    "pending_activities",
    "max_attempt",
    "search_attributes",
)
ACTIVITY_COLUMNS = (
    "run_id",
    "activity_id",
    "activity_type",
    "attempt",
    "maximum_attempts",
    "last_failure",
    "next_retry_time",
)


_MORE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS runs_type_status_start ON runs (workflow_type, status, start_time)",
    "CREATE INDEX IF NOT EXISTS runs_workflow_id_start ON runs (workflow_id, start_time)",
)
_POSTGRESQL_INDEXES = (
    # the default order (`query.DEFAULT_ORDER`): open runs first, then latest closed/started
    # (SQLite refuses NULLS FIRST in an index; its runs_close_time serves the order there)
    "CREATE INDEX IF NOT EXISTS runs_default_order"
    " ON runs (close_time DESC NULLS FIRST, start_time DESC, run_id)",
    "CREATE INDEX IF NOT EXISTS runs_search_attributes ON runs USING GIN (search_attributes)",
    # STARTS_WITH on the keyword columns (LIKE 'prefix%') under any collation
    "CREATE INDEX IF NOT EXISTS runs_workflow_id_prefix ON runs (workflow_id text_pattern_ops)",
    "CREATE INDEX IF NOT EXISTS runs_workflow_type_prefix ON runs (workflow_type text_pattern_ops)",
)


# The default order as one indexable key: an open run's key (2**62 + its start) is above every
# close time, so `key DESC, start_time DESC, run_id` is exactly DEFAULT_ORDER, and unlike it
# (NULLS FIRST on a DESC column) SQLite can read it from an index. The lists people open most
# (all runs, one status, one type, a type and a status) each get an index in that order, so
# their first page reads 100 index entries instead of sorting every match.
_LISTED_KEY = "COALESCE(close_time, 4611686018427387904 + start_time)"
_LISTED_ORDER = (
    OrderTerm(_LISTED_KEY, descending=True),
    OrderTerm("start_time", descending=True),
    OrderTerm("run_id"),
)
_LISTED_INDEXES = tuple(
    f"CREATE INDEX IF NOT EXISTS runs_listed{name} ON runs"
    f" ({columns}({_LISTED_KEY}) DESC, start_time DESC, run_id)"
    for name, columns in (
        ("", ""),
        ("_status", "status, "),
        ("_type", "workflow_type, "),
        ("_type_status", "workflow_type, status, "),
    )
)


def _ddl(dialect: Dialect) -> list[str]:
    extra = _POSTGRESQL_INDEXES if dialect == "postgresql" else ()
    return [*schema.ddl(dialect), *_MORE_INDEXES, *_LISTED_INDEXES, *extra]


def _indexed(order: Sequence[OrderTerm]) -> tuple[OrderTerm, ...]:
    """`order`, with the default order written as its indexed key."""
    return _LISTED_ORDER if tuple(order) == DEFAULT_ORDER_TERMS else tuple(order)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of runs ends: the values of its last row's order terms (run_id last).

    `encode()` makes it a URL-safe string; `Cursor.decode(text)` reads one back (ValueError
    if it is not one)."""

    values: tuple[object, ...]

    def encode(self) -> str:
        raw = json.dumps(list(self.values), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(text: str) -> Cursor:
        try:
            values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (ValueError, binascii.Error):
            values = None
        if (
            not isinstance(values, list)
            or not values
            or not all(v is None or isinstance(v, str | int | float) for v in values)
            # a BIGINT column holds no more; SQLite would raise OverflowError past it
            or any(isinstance(v, int) and not -(2**63) <= v < 2**63 for v in values)
        ):
            raise ValueError(f"{text[:40]!r} is not a cursor of the run list; start from the top")
        return Cursor(tuple(values))


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs in order, and the cursors to the pages beside it.

    `next` is the cursor of the last row when more rows follow (pass it as `after`);
    `previous` the cursor of the first row when rows precede it (pass it as `before`)."""

    runs: list[WorkflowExecution]
    next: Cursor | None
    previous: Cursor | None


def open_store(url: str, *, create: bool = True) -> Store:
    """The store at `url`, its tables created if `create` (idempotent).

    Without `create` (readers), a store that does not exist yet raises
    VisibilityUnavailableError saying how to start the projector that writes it.
    """
    location = parse_url(url)
    if location.dialect == "sqlite":
        conn: Any = connect_sqlite(location, create)
    else:
        conn = connect_postgresql(location)
    store = Store(location, conn)
    if create:
        store.create_tables()
    elif not store.has_tables():
        store.close()
        raise VisibilityUnavailableError(f"no run index in {shown(location)} yet; {HOW_TO_START}")
    return store


class Store:
    """One connection to the run index; thread-safe (one operation at a time)."""

    def __init__(self, location: StoreLocation, conn: Any) -> None:
        self.location = location
        self.dialect: Dialect = location.dialect
        self._conn = conn
        self._lock = threading.RLock()
        self._types: dict[str, SearchAttributeType] | None = None

    @property
    def placeholder(self) -> str:
        """The parameter marker of this dialect (`?` or `%s`)."""
        return "?" if self.dialect == "sqlite" else "%s"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ---- plumbing -----------------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        # this module's own SQL is written with `?`; nothing else is ever rewritten
        return text if self.dialect == "sqlite" else text.replace("?", "%s")

    def _rows(self, text: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._errors():
            return list(self._conn.execute(text, tuple(params)).fetchall())

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except VisibilityUnavailableError:
            raise
        except Exception as e:
            if not _is_database_error(e):
                raise
            raise VisibilityUnavailableError(
                f"the run index at {shown(self.location)} failed: {e}"
            ) from e

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One SQL transaction (the connection inside); commits at the end, else rolls back."""
        with self._lock, self._errors():
            if self.dialect == "postgresql":
                with self._conn.transaction():
                    yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # ---- schema -------------------------------------------------------------------------------
    def create_tables(self) -> None:
        """Creates the tables and indexes that are missing (safe to run concurrently)."""
        with self.transaction() as conn:
            if self.dialect == "postgresql":
                # two projectors starting at once must not race on CREATE ... IF NOT EXISTS
                conn.execute("SELECT pg_advisory_xact_lock(725173501)")
            for statement in _ddl(self.dialect):
                conn.execute(statement)

    def has_tables(self) -> bool:
        if self.dialect == "sqlite":
            found = self._rows("SELECT name FROM sqlite_master WHERE type='table' AND name='runs'")
        else:
            found = self._rows("SELECT to_regclass('runs')")
            found = [r for r in found if r[0] is not None]
        return bool(found)

    def clear(self) -> None:
        """Empties every table (a rebuild starts from the beginning of `history`)."""
        with self.transaction() as conn:
            tables = ("runs", "pending_activities", "search_attribute_types", "history_pages")
            for table in (*tables, "offsets"):
                conn.execute(f"DELETE FROM {table}")  # names from this module, not input
        self._types = None

    # ---- the projector's side -----------------------------------------------------------------
    def offsets(self, topic: str) -> dict[int, int]:
        """The next offset to consume per partition of `topic`, as last committed."""
        rows = self._rows(
            self._sql("SELECT partition, next_offset FROM offsets WHERE topic = ?"), (topic,)
        )
        return {int(p): int(o) for p, o in rows}

    def load_rows(self, run_ids: Collection[str]) -> dict[str, RunRow]:
        """The stored rows of these runs (those the index has), with pending activities."""
        found: dict[str, RunRow] = {}
        ids = list(run_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            runs = self._rows(
                self._sql(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id IN ({marks})"),
                chunk,
            )
            if not runs:
                continue
            activities: dict[str, list[ActivityRow]] = {}
            for a in self._rows(
                self._sql(
                    f"SELECT {', '.join(ACTIVITY_COLUMNS)} FROM pending_activities"
                    f" WHERE run_id IN ({marks}) ORDER BY run_id, activity_id"
                ),
                chunk,
            ):
                activities.setdefault(a[0], []).append(ActivityRow(*a[1:]))
            for r in runs:
                values = dict(zip(RUN_COLUMNS, r, strict=True))
                found[values["run_id"]] = RunRow(
                    run_id=values["run_id"],
                    workflow_id=values["workflow_id"],
                    workflow_type=values["workflow_type"],
                    task_queue=values["task_queue"],
                    status=values["status"],
                    start_time=values["start_time"],
                    last_event_id=values["last_event_id"],
                    close_time=values["close_time"],
                    parent_workflow_id=values["parent_workflow_id"],
                    parent_run_id=values["parent_run_id"],
                    search_attributes=_json(values["search_attributes"]),
                    activities=tuple(activities.get(values["run_id"], ())),
                )
        return found

    def write_batch(
        self,
        rows: Sequence[RunRow],
        types: Mapping[str, SearchAttributeType],
        offsets: Mapping[tuple[str, int], int],
        before_commit: Callable[[], None] | None = None,
        *,
        pages: Sequence[HistoryPage] = (),
    ) -> None:
        """Writes the changed rows, newly seen attribute types, the history pages started and
        the next offsets per partition in ONE transaction: the index and what it has consumed
        never disagree.

        An offset only moves forward (a projector that lost its partition cannot move it
        back). `before_commit` runs inside the transaction, after every write (a test hook).
        """
        with self.transaction() as conn:
            self._write_rows(conn, rows)
            if types:
                conn.cursor().executemany(
                    self._sql(
                        "INSERT INTO search_attribute_types (name, type) VALUES (?, ?)"
                        " ON CONFLICT (name) DO NOTHING"
                    ),
                    [(name, str(t)) for name, t in types.items()],
                )
            if pages:
                conn.cursor().executemany(
                    self._sql(
                        "INSERT INTO history_pages (run_id, first_event_id, partition,"
                        " record_offset) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (run_id, first_event_id) DO NOTHING"
                    ),
                    [(p.run_id, p.first_event_id, p.partition, p.offset) for p in pages],
                )
            conn.cursor().executemany(
                self._sql(
                    "INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?)"
                    " ON CONFLICT (topic, partition) DO UPDATE SET next_offset ="
                    " CASE WHEN excluded.next_offset > offsets.next_offset"
                    " THEN excluded.next_offset ELSE offsets.next_offset END"
                ),
                [(t, p, o) for (t, p), o in offsets.items()],
            )
            if before_commit is not None:
                before_commit()
        if types:
            self._types = None

    def _write_rows(self, conn: Any, rows: Sequence[RunRow]) -> None:
        if not rows:
            return
        json_mark = "?" if self.dialect == "sqlite" else "CAST(? AS JSONB)"
        marks = ", ".join(["?"] * (len(RUN_COLUMNS) - 1) + [json_mark])
        updates = ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS[1:])
        conn.cursor().executemany(
            self._sql(
                f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({marks})"
                f" ON CONFLICT (run_id) DO UPDATE SET {updates}"
            ),
            [_run_values(r) for r in rows],
        )
        conn.cursor().executemany(
            self._sql("DELETE FROM pending_activities WHERE run_id = ?"),
            [(r.run_id,) for r in rows],
        )
        activities = [
            (r.run_id, a.activity_id, a.activity_type, a.attempt, a.maximum_attempts,
             a.last_failure, a.next_retry_time)
            for r in rows
            for a in r.activities
        ]  # fmt: skip
        if activities:
            marks = ", ".join("?" * len(ACTIVITY_COLUMNS))
            conn.cursor().executemany(
                self._sql(
                    f"INSERT INTO pending_activities ({', '.join(ACTIVITY_COLUMNS)})"
                    f" VALUES ({marks})"
                ),
                activities,
            )

    # ---- the reader's side --------------------------------------------------------------------
    def change_mark(self) -> int:
        """A number that grows each time the projector commits a batch (the offsets it has
        consumed, summed): cheap to ask every second, to tell whether lists may have changed."""
        ((total,),) = self._rows("SELECT COALESCE(SUM(next_offset), 0) FROM offsets")
        return int(total)

    def attribute_types(self) -> dict[str, SearchAttributeType]:
        """Every custom search attribute the index has seen, with its type."""
        if self._types is None:
            rows = self._rows("SELECT name, type FROM search_attribute_types")
            self._types = {name: SearchAttributeType(t) for name, t in rows}
        return dict(self._types)

    def refresh_attribute_types(self) -> dict[str, SearchAttributeType]:
        self._types = None
        return self.attribute_types()

    def list_runs(
        self,
        where: str = "",
        params: Sequence[object] = (),
        order_by: str = "",
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[WorkflowExecution]:
        """One page of runs matching `where` (SQL of `query.compile_filter`, with `params`),
        in `order_by` (default: open first, then latest closed, then latest started); the
        run ID breaks ties, so offset paging is stable."""
        order = order_by or DEFAULT_ORDER
        if order == DEFAULT_ORDER:
            order = ", ".join(map(str, _LISTED_ORDER))
        if not order.rstrip().endswith("run_id"):
            order = f"{order}, run_id"
        p = self.placeholder
        rows = self._rows(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE {where or '1=1'}"
            f" ORDER BY {order} LIMIT {p} OFFSET {p}",
            (*params, limit, offset),
        )
        types = self.attribute_types()
        return [_execution(dict(zip(RUN_COLUMNS, r, strict=True)), types) for r in rows]

    def page_runs(
        self,
        where: str = "",
        params: Sequence[object] = (),
        order: Sequence[OrderTerm] = DEFAULT_ORDER_TERMS,
        *,
        limit: int = 100,
        after: Cursor | None = None,
        before: Cursor | None = None,
    ) -> RunPage:
        """One page of runs matching `where` (with `params`) in `order` (a compiled filter's
        `order`, which ends with run_id): the first page, the page after the row `after`
        points at, or the one before `before`. Keyset paging: every page costs what the
        first does, however deep.

        Raises ValueError when a cursor does not fit `order` (it came from another order)."""
        if limit < 1:
            raise ValueError(f"a page holds at least one run, not {limit}")
        terms = _indexed(order)
        if before is not None:
            backwards = tuple(t.reversed() for t in terms)
            found = self._keyset_rows(where, params, backwards, before, limit + 1)
            if len(found) <= limit:  # back at the start: show the first page as it is
                return self.page_runs(where, params, order, limit=limit)
            found = found[:limit][::-1]
            return RunPage([row for row, _ in found], Cursor(found[-1][1]), Cursor(found[0][1]))
        found = self._keyset_rows(where, params, terms, after, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return RunPage(
            [row for row, _ in found],
            Cursor(found[-1][1]) if more else None,
            Cursor(found[0][1]) if after is not None and found else None,
        )

    def _keyset_rows(
        self,
        where: str,
        params: Sequence[object],
        terms: tuple[OrderTerm, ...],
        cursor: Cursor | None,
        limit: int,
    ) -> list[tuple[WorkflowExecution, tuple[object, ...]]]:
        rows = self._rows(*self._page_query(where, params, terms, cursor, limit))
        types = self.attribute_types()
        width = len(RUN_COLUMNS)
        return [
            (_execution(dict(zip(RUN_COLUMNS, r[:width], strict=True)), types), tuple(r[width:]))
            for r in rows
        ]

    def _page_query(
        self,
        where: str,
        params: Sequence[object],
        terms: tuple[OrderTerm, ...],
        cursor: Cursor | None,
        limit: int,
    ) -> tuple[str, tuple[object, ...]]:
        condition, condition_params = "1=1", list[object]()
        if cursor is not None:
            condition, condition_params = keyset_condition(
                terms, cursor.values, dialect=self.dialect
            )
        keys = ", ".join(term.sql for term in terms)
        text = (
            f"SELECT {', '.join(RUN_COLUMNS)}, {keys} FROM runs"
            f" WHERE ({where or '1=1'}) AND {condition}"
            f" ORDER BY {', '.join(map(str, terms))} LIMIT {self.placeholder}"
        )
        return text, (*params, *condition_params, limit)

    def cursor_at(
        self,
        where: str = "",
        params: Sequence[object] = (),
        order: Sequence[OrderTerm] = DEFAULT_ORDER_TERMS,
        *,
        offset: int = 0,
    ) -> Cursor | None:
        """The cursor of the row at `offset` in `order` (None past the end): a page deep in
        the list without walking to it. It reads `offset` rows (an OFFSET query), so it is for
        tools and benchmarks, not for paging."""
        terms = _indexed(order)
        text, values = self._page_query(where, params, terms, None, 1)
        rows = self._rows(f"{text} OFFSET {self.placeholder}", (*values, offset))
        return Cursor(tuple(rows[0][len(RUN_COLUMNS) :])) if rows else None

    def explain_page(
        self,
        where: str = "",
        params: Sequence[object] = (),
        order: Sequence[OrderTerm] = DEFAULT_ORDER_TERMS,
        *,
        after: Cursor | None = None,
    ) -> str:
        """How the database would read the page `page_runs` asks for (its query plan, one
        step a line): to check that a list reads an index rather than sorting every match."""
        text, values = self._page_query(where, params, _indexed(order), after, 101)
        if self.dialect == "sqlite":
            return "\n".join(str(r[-1]) for r in self._rows(f"EXPLAIN QUERY PLAN {text}", values))
        return "\n".join(str(r[0]) for r in self._rows(f"EXPLAIN {text}", values))

    def count_runs(
        self, where: str = "", params: Sequence[object] = (), *, group_by_status: bool = False
    ) -> WorkflowCount:
        """How many runs match; per status too when `group_by_status`."""
        condition = where or "1=1"
        if not group_by_status:
            ((n,),) = self._rows(f"SELECT COUNT(*) FROM runs WHERE {condition}", params)
            return WorkflowCount(int(n))
        rows = self._rows(
            f"SELECT status, COUNT(*) FROM runs WHERE {condition} GROUP BY status", params
        )
        groups = {status: int(n) for status, n in sorted(rows)}
        return WorkflowCount(sum(groups.values()), groups)

    def describe_run(self, run_id: str) -> WorkflowExecution | None:
        """One run with its pending activities, or None if the index has no such run."""
        rows = self._rows(
            self._sql(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id = ?"), (run_id,)
        )
        if not rows:
            return None
        execution = _execution(dict(zip(RUN_COLUMNS, rows[0], strict=True)), self.attribute_types())
        return _with_activities(execution, self.pending_activities(run_id))

    def pending_activities(self, run_id: str) -> tuple[PendingActivity, ...]:
        """The run's activities scheduled and not yet closed, by activity ID."""
        rows = self._rows(
            self._sql(
                f"SELECT {', '.join(ACTIVITY_COLUMNS[1:])} FROM pending_activities"
                " WHERE run_id = ? ORDER BY activity_id"
            ),
            (run_id,),
        )
        return tuple(
            PendingActivity(
                activity_id=int(aid),
                activity_type=atype,
                attempt=int(attempt),
                maximum_attempts=int(maximum),
                last_failure=failure,
                next_retry_time=None if retry is None else from_millis(int(retry)),
            )
            for aid, atype, attempt, maximum, failure, retry in rows
        )

    def history_page(self, run_id: str, event_id: int | None = None) -> HistoryPage | None:
        """The page of the run's history that holds `event_id` (None: its last page), or
        None when the index has no page of the run (a run indexed before pages were kept)."""
        sql = (
            "SELECT first_event_id, partition, record_offset FROM history_pages"
            " WHERE run_id = ?{} ORDER BY first_event_id DESC LIMIT 1"
        )
        if event_id is None:
            rows = self._rows(self._sql(sql.format("")), (run_id,))
        else:
            rows = self._rows(self._sql(sql.format(" AND first_event_id <= ?")), (run_id, event_id))
        if not rows:
            return None
        first, partition, offset = rows[0]
        return HistoryPage(run_id, int(first), int(partition), int(offset))


def _run_values(r: RunRow) -> tuple[object, ...]:
    return (
        r.run_id,
        r.workflow_id,
        r.workflow_type,
        r.task_queue,
        r.status,
        r.start_time,
        r.close_time,
        r.execution_duration,
        r.last_event_id,  # history_length: event IDs count from 1 without gaps
        r.last_event_id,
        r.parent_workflow_id,
        r.parent_run_id,
        len(r.activities),
        r.max_attempt,
        json.dumps(r.search_attributes, sort_keys=True, separators=(",", ":")),
    )


def _json(value: Any) -> dict[str, object]:
    # SQLite gives the text back; psycopg gives JSONB back already decoded
    return dict(json.loads(value) if isinstance(value, str | bytes) else value)


def _execution(v: dict[str, Any], types: Mapping[str, SearchAttributeType]) -> WorkflowExecution:
    attributes = _json(v["search_attributes"])
    for name, value in attributes.items():
        if types.get(name) is SearchAttributeType.DATETIME and isinstance(value, int | float):
            attributes[name] = from_millis(int(value))
    duration = v["execution_duration"]
    return WorkflowExecution(
        workflow_id=v["workflow_id"],
        run_id=v["run_id"],
        workflow_type=v["workflow_type"],
        task_queue=v["task_queue"],
        status=v["status"],
        start_time=from_millis(int(v["start_time"])),
        close_time=None if v["close_time"] is None else from_millis(int(v["close_time"])),
        execution_duration=None if duration is None else timedelta(milliseconds=int(duration)),
        history_length=int(v["history_length"]),
        parent_workflow_id=v["parent_workflow_id"],
        parent_run_id=v["parent_run_id"],
        search_attributes=attributes,
        pending_activity_count=int(v["pending_activities"]),
        max_attempt=int(v["max_attempt"]),
    )


def _with_activities(
    e: WorkflowExecution, activities: tuple[PendingActivity, ...]
) -> WorkflowExecution:
    return replace(e, pending_activities=activities)


def _is_database_error(e: Exception) -> bool:
    if isinstance(e, sqlite3.Error):
        return True
    module = type(e).__module__ or ""
    return module.startswith("psycopg")
