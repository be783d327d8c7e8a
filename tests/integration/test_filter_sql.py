"""The filter language's SQL selects, on real SQLite and real PostgreSQL, exactly the runs a
plain Python predicate over the same generated rows selects, in the order it says.

No broker: the tables come from `streams.visibility.schema`, filled with ~300 generated runs
whose search attributes cover all seven types (each missing from some runs).
"""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.visibility.query import STATUSES, compile_filter
from streams.visibility.schema import ddl
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
NOTES = [
    "payment failed, retry later",
    "Refund approved.",
    "manual REVIEW needed",
    "waiting for review: customer",
    "refunded in full",
    "all good",
]
BASE_MS = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)


def ms(iso: str) -> int:
    """An ISO datetime with its offset, as epoch milliseconds (computed without the compiler)."""
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


@dataclass
class Run:
    run_id: str
    workflow_id: str
    workflow_type: str
    task_queue: str
    status: str
    start_time: int
    close_time: int | None
    execution_duration: int | None
    history_length: int
    parent_workflow_id: str | None
    parent_run_id: str | None
    pending_activities: int
    max_attempt: int
    attributes: dict[str, Any] = field(default_factory=dict)

    def sa(self, name: str) -> Any:
        return self.attributes.get(name)


def generate_runs(count: int = 300) -> list[Run]:
    rng = random.Random(12)
    runs = []
    for i in range(count):
        status = rng.choice(STATUSES)
        start = BASE_MS + rng.randrange(0, 45 * 86_400_000)
        closed = status not in ("Running", "Blocked")
        duration = rng.randrange(1_000, 3 * 3_600_000) if closed else None
        parent = rng.random() < 0.25
        attributes: dict[str, Any] = {}
        draws: dict[str, Callable[[], Any]] = {
            "Region": lambda: rng.choice(["eu-west", "eu-east", "us-west", "ap_south", "apXsouth"]),
            "Note": lambda: rng.choice(NOTES),
            "Count": lambda: rng.randrange(-5, 100),
            "Amount": lambda: round(rng.uniform(0, 1000), 2),
            "Vip": lambda: rng.random() < 0.4,
            "Due": lambda: BASE_MS + rng.randrange(0, 60 * 86_400_000),
            "Tags": lambda: rng.sample(["urgent", "eu", "vip", "late"], rng.randrange(0, 4)),
        }
        for name, draw in draws.items():
            if rng.random() < 0.75:
                attributes[name] = draw()
        runs.append(
            Run(
                run_id=f"run-{i:04d}",
                workflow_id="x" if i == 0 else f"order-{rng.randrange(40)}",
                workflow_type=rng.choice(["Transfer", "Refund", "Report"]),
                task_queue=rng.choice(["default", "payments"]),
                status=status,
                start_time=start,
                close_time=start + duration if duration is not None else None,
                execution_duration=duration,
                history_length=rng.randrange(3, 500),
                parent_workflow_id=f"parent-{rng.randrange(30)}" if parent else None,
                parent_run_id=f"prun-{rng.randrange(1000)}" if parent else None,
                pending_activities=rng.randrange(0, 4) if not closed else 0,
                max_attempt=rng.randrange(0, 7),
                attributes=attributes,
            )
        )
    return runs


RUNS = generate_runs()


def row(run: Run) -> tuple[object, ...]:
    return (
        run.run_id, run.workflow_id, run.workflow_type, run.task_queue, run.status,
        run.start_time, run.close_time, run.execution_duration, run.history_length,
        run.history_length, run.parent_workflow_id, run.parent_run_id,
        run.pending_activities, run.max_attempt, json.dumps(run.attributes),
    )  # fmt: skip


INSERT = (
    "INSERT INTO runs (run_id, workflow_id, workflow_type, task_queue, status, start_time,"
    " close_time, execution_duration, history_length, last_event_id, parent_workflow_id,"
    " parent_run_id, pending_activities, max_attempt, search_attributes) VALUES ({})"
)


@dataclass
class Store:
    dialect: Any
    select: Callable[[str, tuple[object, ...]], list[str]]


def _sqlite_store() -> Iterator[Store]:
    conn = sqlite3.connect(":memory:")
    for statement in ddl("sqlite"):
        conn.execute(statement)
    conn.executemany(INSERT.format(", ".join("?" * 15)), [row(r) for r in RUNS])
    for name, kind in TYPES.items():
        conn.execute("INSERT INTO search_attribute_types VALUES (?, ?)", (name, kind.value))
    try:
        yield Store("sqlite", lambda sql, params: [r[0] for r in conn.execute(sql, params)])
    finally:
        conn.close()


def _postgres_store(server: str) -> Iterator[Store]:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # a name made here, not user input
    conn = psycopg.connect(server.rsplit("/", 1)[0] + "/" + name, autocommit=True)
    try:
        for statement in ddl("postgresql"):
            conn.execute(statement)
        with conn.cursor() as cursor:
            cursor.executemany(INSERT.format(", ".join(["%s"] * 15)), [row(r) for r in RUNS])
            cursor.executemany(
                "INSERT INTO search_attribute_types VALUES (%s, %s)",
                [(name, kind.value) for name, kind in TYPES.items()],
            )

        def select(sql: str, params: tuple[object, ...]) -> list[str]:
            return [r[0] for r in conn.execute(sql, params).fetchall()]

        yield Store("postgresql", select)
    finally:
        conn.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "sqlite":
        yield from _sqlite_store()
    else:
        yield from _postgres_store(request.getfixturevalue("postgres_server"))


def run_filter(store: Store, query: str) -> list[str]:
    compiled = compile_filter(query, dialect=store.dialect, attribute_types=TYPES)
    sql = f"SELECT run_id FROM runs WHERE {compiled.where} ORDER BY {compiled.order_by}"
    return store.select(sql, compiled.params)


# ---- the Python predicates: a missing value makes every comparison false, as in SQL ----------


def cmp(value: Any, test: Callable[[Any], bool]) -> bool:
    return value is not None and test(value)


def has_word(text: Any, word: str) -> bool:
    if text is None:
        return False
    words = text.lower().translate({ord(c): " " for c in ",.;:!"})
    return f" {word} " in f" {words} "


def tags(run: Run) -> list[str] | None:
    value: list[str] | None = run.sa("Tags")
    return value


HOUR = 3_600_000
FILTERS: list[tuple[str, Callable[[Run], bool]]] = [
    ("", lambda r: True),
    ("WorkflowId = 'order-7'", lambda r: r.workflow_id == "order-7"),
    ("RunId = 'run-0042'", lambda r: r.run_id == "run-0042"),
    ("WorkflowType != 'Report'", lambda r: r.workflow_type != "Report"),
    (
        "TaskQueue = 'payments' AND ExecutionStatus = 'Failed'",
        lambda r: r.task_queue == "payments" and r.status == "Failed",
    ),
    (
        "ExecutionStatus IN ('Completed', 'Canceled')",
        lambda r: r.status in ("Completed", "Canceled"),
    ),
    (
        "ExecutionStatus NOT IN ('Running', 'Blocked')",
        lambda r: r.status not in ("Running", "Blocked"),
    ),
    (
        "StartTime > '2026-11-20T00:00:00Z'",
        lambda r: r.start_time > ms("2026-11-20T00:00:00+00:00"),
    ),
    (
        "StartTime <= '2026-11-10T12:00:00+02:00'",
        lambda r: r.start_time <= ms("2026-11-10T10:00:00+00:00"),
    ),
    (
        "CloseTime >= '2026-12-01'",
        lambda r: cmp(r.close_time, lambda v: v >= ms("2026-12-01T00:00:00+00:00")),
    ),
    ("CloseTime IS NULL", lambda r: r.close_time is None),
    (
        "CloseTime IS NOT NULL AND ExecutionDuration < '1h'",
        lambda r: r.close_time is not None and cmp(r.execution_duration, lambda v: v < HOUR),
    ),
    (
        "ExecutionDuration BETWEEN '5m' AND 7200000",
        lambda r: cmp(r.execution_duration, lambda v: 300_000 <= v <= 2 * HOUR),
    ),
    ("HistoryLength >= 250", lambda r: r.history_length >= 250),
    ("HistoryLength < 100 OR HistoryLength > 400", lambda r: not 100 <= r.history_length <= 400),
    (
        "ParentWorkflowId STARTS_WITH 'parent-1'",
        lambda r: cmp(r.parent_workflow_id, lambda v: v.startswith("parent-1")),
    ),
    ("ParentRunId IS NOT NULL", lambda r: r.parent_run_id is not None),
    (
        "ParentWorkflowId != 'parent-3'",
        lambda r: cmp(r.parent_workflow_id, lambda v: v != "parent-3"),
    ),
    ("PendingActivities > 0", lambda r: r.pending_activities > 0),
    ("ActivityAttempt >= 3", lambda r: r.max_attempt >= 3),
    ("Blocked = true", lambda r: r.status == "Blocked"),
    ("ExecutionStatus STARTS_WITH 'C'", lambda r: r.status.startswith("C")),
    ("ExecutionStatus > 'Failed'", lambda r: r.status > "Failed"),
    (
        "Blocked != true AND ExecutionStatus != 'Completed'",
        lambda r: r.status not in ("Blocked", "Completed"),
    ),
    ("Region = 'eu-west'", lambda r: r.sa("Region") == "eu-west"),
    ("Region STARTS_WITH 'ap_'", lambda r: cmp(r.sa("Region"), lambda v: v.startswith("ap_"))),
    ("Region STARTS_WITH 'EU'", lambda r: False),  # keywords are case-sensitive
    ("Region != 'us-west'", lambda r: cmp(r.sa("Region"), lambda v: v != "us-west")),
    ("Region IS NULL", lambda r: r.sa("Region") is None),
    ("Note = 'failed'", lambda r: has_word(r.sa("Note"), "failed")),
    ("Note = 'REVIEW'", lambda r: has_word(r.sa("Note"), "review")),
    (
        "Note != 'review'",
        lambda r: r.sa("Note") is not None and not has_word(r.sa("Note"), "review"),
    ),
    (
        "Note IN ('refund', 'Later')",
        lambda r: has_word(r.sa("Note"), "refund") or has_word(r.sa("Note"), "later"),
    ),
    ("Count < 10", lambda r: cmp(r.sa("Count"), lambda v: v < 10)),
    ("Count BETWEEN 0 AND 20", lambda r: cmp(r.sa("Count"), lambda v: 0 <= v <= 20)),
    ("Count IN (1, 2, 3) OR Count = -5", lambda r: r.sa("Count") in (1, 2, 3, -5)),
    ("Count NOT IN (1, 2, 3)", lambda r: cmp(r.sa("Count"), lambda v: v not in (1, 2, 3))),
    ("Amount >= 500.5", lambda r: cmp(r.sa("Amount"), lambda v: v >= 500.5)),
    ("Amount < 100", lambda r: cmp(r.sa("Amount"), lambda v: v < 100)),
    ("Vip = true", lambda r: r.sa("Vip") is True),
    ("Vip != true", lambda r: r.sa("Vip") is False),
    (
        "Due > '2026-12-15T00:00:00Z'",
        lambda r: cmp(r.sa("Due"), lambda v: v > ms("2026-12-15T00:00:00+00:00")),
    ),
    (
        "Due IS NULL OR Due <= '2026-11-05'",
        lambda r: r.sa("Due") is None or r.sa("Due") <= ms("2026-11-05T00:00:00+00:00"),
    ),
    ("Tags = 'urgent'", lambda r: "urgent" in (tags(r) or [])),
    ("Tags IN ('vip', 'late')", lambda r: bool({"vip", "late"} & set(tags(r) or []))),
    ("Tags != 'eu'", lambda r: tags(r) is not None and "eu" not in (tags(r) or [])),
    (
        "Tags NOT IN ('urgent', 'vip')",
        lambda r: tags(r) is not None and not {"urgent", "vip"} & set(tags(r) or []),
    ),
    ("Tags IS NOT NULL", lambda r: tags(r) is not None),
    (
        "WorkflowType = 'Transfer' OR WorkflowType = 'Refund' AND Vip = true",
        lambda r: (
            r.workflow_type == "Transfer" or (r.workflow_type == "Refund" and r.sa("Vip") is True)
        ),
    ),
    (
        "(WorkflowType = 'Transfer' OR WorkflowType = 'Refund') AND Vip = true",
        lambda r: r.workflow_type in ("Transfer", "Refund") and r.sa("Vip") is True,
    ),
    (
        "Blocked = true OR (PendingActivities >= 2 AND (Count > 50 OR Tags = 'urgent'))",
        lambda r: (
            r.status == "Blocked"
            or (
                r.pending_activities >= 2
                and (cmp(r.sa("Count"), lambda v: v > 50) or "urgent" in (tags(r) or []))
            )
        ),
    ),
    (
        "ExecutionStatus = 'Running' and Count > 5 or Vip = FALSE",
        lambda r: (
            (r.status == "Running" and cmp(r.sa("Count"), lambda v: v > 5)) or r.sa("Vip") is False
        ),
    ),
    ("WorkflowId IN ('order-1', 'order-2')", lambda r: r.workflow_id in ("order-1", "order-2")),
]
EMPTY_IS_RIGHT = {"Region STARTS_WITH 'EU'"}


@pytest.mark.parametrize(("query", "predicate"), FILTERS, ids=[q or "<empty>" for q, _ in FILTERS])
def test_sql_selects_the_runs_the_python_predicate_selects(
    store: Store, query: str, predicate: Callable[[Run], bool]
) -> None:
    expected = {r.run_id for r in RUNS if predicate(r)}
    got = run_filter(store, query)
    assert set(got) == expected and len(got) == len(expected), query
    # the generated data makes every filter discriminate: it selects some runs, not all
    assert query == "" or query in EMPTY_IS_RIGHT or 0 < len(expected) < len(RUNS), query


def ordered(runs: list[Run], keys: list[tuple[Callable[[Run], Any], bool]]) -> list[str]:
    """Run IDs sorted by `keys` (getter, descending), missing values last, then by run ID."""
    out = sorted(runs, key=lambda r: r.run_id)
    for getter, descending in reversed(keys):
        present = [r for r in out if getter(r) is not None]
        missing = [r for r in out if getter(r) is None]
        out = sorted(present, key=getter, reverse=descending) + missing
    return [r.run_id for r in out]


def default_order(runs: list[Run]) -> list[str]:
    """Open runs first, then by close time and start time, latest first; then by run ID."""
    return [
        r.run_id
        for r in sorted(
            runs,
            key=lambda r: (r.close_time is not None, -(r.close_time or 0), -r.start_time, r.run_id),
        )
    ]


ORDERS: list[tuple[str, Callable[[], list[str]]]] = [
    ("", lambda: default_order(RUNS)),
    ("Vip = true", lambda: default_order([r for r in RUNS if r.sa("Vip") is True])),
    ("ORDER BY StartTime", lambda: ordered(RUNS, [(lambda r: r.start_time, False)])),
    (
        "ExecutionStatus = 'Completed' ORDER BY CloseTime DESC",
        lambda: ordered(
            [r for r in RUNS if r.status == "Completed"], [(lambda r: r.close_time, True)]
        ),
    ),
    (
        "ORDER BY ExecutionDuration desc",
        lambda: ordered(RUNS, [(lambda r: r.execution_duration, True)]),
    ),
    ("ORDER BY Amount DESC, RunId", lambda: ordered(RUNS, [(lambda r: r.sa("Amount"), True)])),
    (
        "ORDER BY WorkflowType, HistoryLength DESC",
        lambda: ordered(
            RUNS, [(lambda r: r.workflow_type, False), (lambda r: r.history_length, True)]
        ),
    ),
    (
        "Count > 0 ORDER BY Region ASC, Due DESC",
        lambda: ordered(
            [r for r in RUNS if cmp(r.sa("Count"), lambda v: v > 0)],
            [(lambda r: r.sa("Region"), False), (lambda r: r.sa("Due"), True)],
        ),
    ),
    (
        "ORDER BY Vip, Count DESC",
        lambda: ordered(RUNS, [(lambda r: r.sa("Vip"), False), (lambda r: r.sa("Count"), True)]),
    ),
]


@pytest.mark.parametrize(("query", "expected"), ORDERS, ids=[q or "<empty>" for q, _ in ORDERS])
def test_sql_returns_the_runs_in_the_order_asked(
    store: Store, query: str, expected: Callable[[], list[str]]
) -> None:
    assert run_filter(store, query) == expected(), query


INJECTIONS = [
    "WorkflowId = 'x'' OR 1=1 --'",
    'WorkflowId = "x\\" OR \\"1\\"=\\"1"',
    "Region = 'eu-west''; DROP TABLE runs; --'",
    "Tags IN ('urgent'') OR 1=1 --')",
    "Note = 'failed%' OR Note = 'fail_d'",
    "WorkflowId STARTS_WITH '%' OR WorkflowId STARTS_WITH '*' OR WorkflowId STARTS_WITH '_'",
    "WorkflowId = '?' OR WorkflowId = '%s' OR WorkflowId = '$1'",
]


@pytest.mark.parametrize("query", INJECTIONS)
def test_a_value_shaped_like_sql_is_only_a_value(store: Store, query: str) -> None:
    compiled = compile_filter(query, dialect=store.dialect, attribute_types=TYPES)
    for fragment in ("1=1", "DROP", "--", "failed", "fail_d", "%s'", "$1", "x'"):
        assert fragment not in compiled.where, (fragment, compiled.where)
    assert run_filter(store, query) == []
    assert len(run_filter(store, "")) == len(RUNS)  # the table is still there, whole


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_ddl_creates_the_five_tables_and_can_run_again(
    request: pytest.FixtureRequest, dialect: Any
) -> None:
    tables = {"runs", "search_attribute_types", "pending_activities", "offsets", "history_pages"}
    if dialect == "sqlite":
        conn = sqlite3.connect(":memory:")
        for statement in ddl(dialect) * 2:
            conn.execute(statement)
        found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        conn.execute("INSERT INTO offsets VALUES ('history', 3, 42)")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(request.getfixturevalue("postgres_dsn"), autocommit=True) as pg:
            for statement in ddl(dialect) * 2:
                pg.execute(statement)
            rows = pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            found = {r[0] for r in rows.fetchall()}
            pg.execute("INSERT INTO offsets VALUES ('history', 3, 42)")
            (kind,) = pg.execute(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = 'runs' AND column_name = 'search_attributes'"
            ).fetchone() or ("",)
            assert kind == "jsonb"
    assert found == tables
